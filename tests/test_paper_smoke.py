"""Every paper's `paper` preset proven on this machine: `run --preset paper --smoke`
builds full-size data for a few samples, every arm's full-size model, trains two steps
each, evaluates, and prints its peak memory, which must stay within 16 GB.

Times are not asserted here (see `benchmarks/bench_paper_smoke.py`)."""

import json

import pytest

from shared.cli.papers import PAPERS
from shared.testing.smoke_runs import run_smoke

PEAK_LIMIT_MIB = 16 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_paper_preset_smoke_run(paper, tmp_path):
    run = run_smoke(paper, tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    assert run.peak_mib is not None, "no 'peak memory: N MiB' line:\n" + run.output[-2000:]
    assert 0 < run.peak_mib <= PEAK_LIMIT_MIB
    run_dir = tmp_path / "run"
    # What the run read back (data written in the real format) and what it recorded:
    # the study's protocol.json, or smoke.json for papers whose smoke run skips the study.
    assert any(path.is_file() for path in run_dir.rglob("*") if "data" in path.parts
               or "covidx" in path.parts), sorted(p.name for p in run_dir.iterdir())
    records = [run_dir / name for name in ("protocol.json", "smoke.json")
               if (run_dir / name).is_file()]
    assert records, sorted(p.name for p in run_dir.iterdir())
    for record in records:
        json.loads(record.read_text())
