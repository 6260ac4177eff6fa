"""Library chatter to a run's log file; the terminal keeps the progress bars.

Keras prints a progress bar per batch, Keras Tuner a table per trial, TensorFlow its
C++ start-up lines and scikit-learn its warnings. While `output_to_log` is active,
everything written to the process's standard output and error (Python and C level),
every warning and every log record goes to the log file, and `sys.stderr` is a
stream on the original terminal, where tqdm draws its bars.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path


@contextlib.contextmanager
def output_to_log(path):
    """Sends standard output and error, warnings and logging to `path` (appended).

    Args:
        path: str or Path. The log file; its folder is created.

    Yields:
        The terminal stream (also `sys.stderr` inside the block).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(path, "a", buffering=1, encoding="utf-8")
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8",
                         errors="replace")
    old_streams = sys.stdout, sys.stderr
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_handlers = root.handlers[:]
    old_showwarning = warnings.showwarning
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout, sys.stderr = log, terminal
        root.handlers = [handler]
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
            log.write(warnings.formatwarning(message, category, filename, lineno, line))
        yield terminal
    finally:
        warnings.showwarning = old_showwarning
        root.handlers = old_handlers
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError):
                stream.flush()
        sys.stdout, sys.stderr = old_streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        terminal.close()
        log.close()
