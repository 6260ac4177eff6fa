"""Atomic file writes: a temporary file in the same folder, then `os.replace`.

A reader (or a run killed half-way) sees the old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` on success.

    The temporary name keeps the suffix (`report.tmp-123.png`) so writers that choose
    the format from the extension (matplotlib) still do. On an error the temporary
    file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> Path:
    """Writes `text` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, document, *, indent: int = 2, sort_keys: bool = True) -> Path:
    """Writes strict JSON (no NaN / Infinity) atomically; returns the path."""
    return write_text(path, json.dumps(document, indent=indent, sort_keys=sort_keys,
                                       allow_nan=False) + "\n")


def save_figure(fig, path, **savefig_kwargs) -> Path:
    """Saves a matplotlib figure atomically; returns the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
    return Path(path)
