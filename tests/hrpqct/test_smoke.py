import pytest

from hrpqct import cli
from hrpqct.config import get_config
from hrpqct.smoke import SMOKE_MAX_STEPS, smoke_config, smoke_run_arguments

pytestmark = pytest.mark.no_keras


def test_smoke_config_keeps_the_sizes_and_cuts_the_work():
    paper = get_config("paper")
    smoke = smoke_config(paper)
    for key in ("image_size", "oversample", "stack_slices", "n_projections", "baseline_filters",
                "proposed_filters", "dense_units", "batch_size", "prefilter_mm", "slices_per_scan"):
        assert getattr(smoke, key) == getattr(paper, key), key
    assert sum(smoke.sites.values()) == 4 and smoke.seeds == 1 and smoke.ensemble_size == 1
    assert smoke.epochs == 1
    assert smoke_run_arguments(smoke) == {"simulated_slices": 8, "max_steps": SMOKE_MAX_STEPS}
    assert SMOKE_MAX_STEPS == 2


def test_run_accepts_smoke_and_powered():
    import argparse

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["hrpqct", "run", "--preset", "paper", "--smoke"])
    assert args.smoke and args.preset == "paper"
    assert parser.parse_args(["hrpqct", "run", "--preset", "powered"]).preset == "powered"


@pytest.mark.slow
def test_tiny_smoke_run_end_to_end(tmp_path):
    # The smoke path at the tiny preset's sizes: 4 scans, stacks of 8 written from the
    # simulated slices, two steps per network, the evaluation and the peak-memory line.
    from shared.testing.bad_input import run_cli

    code, out, err = run_cli(["hrpqct", "run", "--preset", "tiny", "--smoke", "--out", tmp_path / "run",
                              "--store", f"sqlite:///{tmp_path / 'r.sqlite'}", "--no-progress"])
    assert code == 0, err
    assert "peak memory:" in out.splitlines()[-1] and "wall time:" in out
    import json

    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["n_scans"] == 4 and results["n_test"] >= 1 and results["n_pool"] >= 2
    assert all(r["epochs"] == 1 for arm in results["arms"].values() for r in arm["runs"])
