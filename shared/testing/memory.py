"""Measures the memory a call allocates, for tests that a forged header is refused cheaply.

    peak = peak_allocation(lambda: assert_one_line_error(argv, "scan.nii"))
    assert peak < 200 * 2**20

`tracemalloc` sees NumPy's buffers and Python objects; the growth of the process's peak
resident size (`resource.getrusage`) sees what native libraries allocate and touch.
"""

from __future__ import annotations

import sys
import tracemalloc


def _max_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def peak_allocation(call) -> int:
    """Runs `call()`; returns the larger of its traced peak and its peak-RSS growth in bytes."""
    before = _max_rss_bytes()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        call()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if started:
            tracemalloc.stop()
    return max(peak, _max_rss_bytes() - before)
