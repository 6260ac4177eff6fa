"""What a run cost: peak memory of this process and its children, wall time."""

from __future__ import annotations

import resource
import sys


def peak_memory_mib() -> float:
    """Peak resident memory (MiB) of this process, or of its largest finished child."""
    scale = 1.0 / 1024.0 if sys.platform != "darwin" else 1.0 / (1024.0 * 1024.0)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * scale


def peak_memory_line() -> str:
    """The line a smoke run prints last: `peak memory: 1234 MiB`."""
    return f"peak memory: {peak_memory_mib():.0f} MiB"
