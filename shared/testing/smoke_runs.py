"""Runs `medrepro <paper> run --preset P --smoke` in a fresh interpreter and reads
what it cost: exit status, wall seconds and the peak memory line it prints last.

Used by the paper-preset smoke test and by `benchmarks/bench_paper_smoke.py`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PEAK_LINE = re.compile(r"^peak memory: (\d+) MiB$", re.MULTILINE)


@dataclass
class SmokeRun:
    paper: str
    returncode: int
    seconds: float
    peak_mib: float | None
    output: str


def run_smoke(paper: str, work_dir, *, preset="paper", timeout=900) -> SmokeRun:
    """`medrepro PAPER run --preset PRESET --smoke` with its run folder, store and
    home under `work_dir`; the child's output is kept, not printed."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(work_dir / "home"), "MPLCONFIGDIR": str(work_dir / "mpl"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MEDREPRO_STORE", None)
    command = [sys.executable, "-m", "shared", paper, "run", "--preset", preset, "--smoke",
               "--no-progress", "--out", str(work_dir / "run"),
               "--store", f"sqlite:///{work_dir / 'results.sqlite'}"]
    started = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=work_dir, env=env, capture_output=True,
                                text=True, timeout=timeout)
        code, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as err:
        code = -9
        output = f"timed out after {timeout} s\n" + (err.stdout or b"").decode(errors="replace")
    seconds = time.perf_counter() - started
    peaks = PEAK_LINE.findall(output)
    return SmokeRun(paper, code, seconds, float(peaks[-1]) if peaks else None, output)
