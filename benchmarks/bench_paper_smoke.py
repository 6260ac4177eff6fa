"""Paper presets proven on this machine: wall time and peak memory of
`medrepro <paper> run --preset paper --smoke` for each of the five papers.

Each smoke run builds full-size data for a few samples (written in the real on-disk
format and read back through the loader), every arm's full-size model, trains two
steps of each and evaluates. Targets: at most 5 minutes and 16 GB each on a 2-core CPU.

`run(short=True)` runs one paper's `tiny` preset with `--smoke` instead: seconds, to
show the path still works.
"""

import tempfile
from pathlib import Path

from shared.cli.papers import PAPERS
from shared.testing.smoke_runs import run_smoke

SECONDS_TARGET = "<= 300"
PEAK_TARGET = "<= 16384"


def run(short=False):
    papers = ["hrpqct"] if short else sorted(PAPERS)
    preset = "tiny" if short else "paper"
    rows = []
    for paper in papers:
        with tempfile.TemporaryDirectory() as folder:
            smoke = run_smoke(paper, Path(folder), preset=preset)
        if smoke.returncode != 0 or smoke.peak_mib is None:
            tail = smoke.output.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{paper} --preset {preset} --smoke failed "
                               f"(exit {smoke.returncode}): {tail[0][:200]}")
        name = paper.replace("-", "_")
        rows.append({"name": f"{name}_{preset}_smoke_seconds", "value": round(smoke.seconds, 1),
                     "unit": "s", "target": SECONDS_TARGET,
                     "detail": f"medrepro {paper} run --preset {preset} --smoke, wall time"})
        rows.append({"name": f"{name}_{preset}_smoke_peak_memory", "value": smoke.peak_mib,
                     "unit": "MiB", "target": PEAK_TARGET,
                     "detail": "peak resident memory the run printed"})
    return rows
