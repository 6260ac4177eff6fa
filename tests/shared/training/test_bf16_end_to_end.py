"""A whole tiny study under `--precision mixed_bfloat16` (hrpqct, the cheapest tiny run)."""

import json
import math

import keras
import pytest

from shared.testing.bad_input import run_cli

pytestmark = pytest.mark.slow


def _numbers(tree):
    """Every int or float in a JSON tree (bools excluded)."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_tiny_hrpqct_run_in_bfloat16_records_it_and_stays_finite(tmp_path):
    out = tmp_path / "run"
    try:
        code, printed, err = run_cli(["hrpqct", "run", "--preset", "tiny", "--out", out,
                                      "--precision", "mixed_bfloat16", "--no-progress",
                                      "--store", f"sqlite:///{tmp_path / 'r.sqlite'}"])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert code == 0, printed + err
    results = json.loads((out / "results.json").read_text())
    assert results["scale"]["precision"] == "mixed_bfloat16"
    curves = json.loads((out / "training_curves.json").read_text())
    losses = list(_numbers(curves))
    assert losses and all(math.isfinite(v) for v in losses)
    claims = json.loads((out / "claims.json").read_text())
    means = [m for c in claims["claims"] for m in c["arm_means"].values()]
    assert len(means) >= 2 * len(claims["claims"])  # every claim compares two arms
    assert all(math.isfinite(v) for v in _numbers(claims))
