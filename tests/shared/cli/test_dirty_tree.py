"""A powered or paper study on a modified source tree is refused before its run folder
exists, unless --allow-dirty is given; every paper's `run` hands the permission on."""

import argparse
from pathlib import Path

import pytest

import shared.io.run_folder
import shared.tracking.runs
from shared.cli.options import prepared_run_folder
from shared.study.provenance import DirtyTreeError
from shared.testing.bad_input import run_cli

DIRTY = "0123456789abcdef0123456789abcdef01234567+dirty"

# Paper command -> (module, name) of the function its `run --preset powered` calls.
RUNS = {
    "covidnet-siamese": ("covidnet_siamese.experiment", "run_experiment"),
    "heatmap-loss": ("heatmap_loss.experiment", "run_experiment"),
    "hrpqct": ("hrpqct.experiment", "run_experiment"),
    "lge-qa": ("lge_qa.limited", "run_limited_study"),
    "bar-ad": ("bar_ad.experiment", "run_experiment"),
}


@pytest.fixture
def dirty(monkeypatch):
    monkeypatch.setattr(shared.tracking.runs, "git_revision", lambda path=None: DIRTY)


def _args(**fields):
    values = dict(preset="powered", out=None, seed=0, resume=False, overwrite=False, smoke=False,
                  allow_dirty=False)
    values.update(fields)
    return argparse.Namespace(**values)


@pytest.mark.parametrize("paper", sorted(RUNS))
def test_powered_run_on_a_dirty_tree_is_refused_before_the_folder_exists(paper, dirty, tmp_path,
                                                                         monkeypatch):
    def no_folder(*args, **kwargs):
        pytest.fail("the run folder was prepared on a dirty tree")

    monkeypatch.setattr(shared.io.run_folder, "open_run_folder", no_folder)
    out = tmp_path / "run"
    code, printed, err = run_cli([paper, "run", "--preset", "powered", "--out", out, "--no-progress"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and not printed, err
    assert lines[0].startswith("medrepro: error:")
    assert DIRTY in lines[0] and "--allow-dirty" in lines[0] and "'powered'" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("paper", sorted(RUNS))
def test_allow_dirty_reaches_the_run_and_the_folder_is_accepted(paper, dirty, tmp_path, monkeypatch):
    import importlib

    module, name = RUNS[paper]
    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        return {"table": "", "report": "report.md"} if paper == "lge-qa" else Path("report.md")

    monkeypatch.setattr(importlib.import_module(module), name, fake_run)
    out = tmp_path / "run"
    code, printed, err = run_cli([paper, "run", "--preset", "powered", "--out", out, "--no-progress",
                                  "--store", f"sqlite:///{tmp_path / 's.sqlite'}", "--allow-dirty"])
    assert code == 0, err
    assert seen["allow_dirty"] is True
    assert not out.exists()  # the run's first write creates it; this stand-in wrote nothing


def test_tiny_smoke_and_allowed_runs_are_not_refused(dirty, tmp_path):
    assert prepared_run_folder(_args(preset="tiny", out=tmp_path / "tiny"), "p", "tiny") \
        == tmp_path / "tiny"
    assert prepared_run_folder(_args(preset="quick", out=tmp_path / "quick"), "p", "quick") \
        == tmp_path / "quick"
    # A smoke run of the paper preset writes no claims: not checked.
    assert prepared_run_folder(_args(preset="paper", smoke=True, out=tmp_path / "smoke"),
                               "p", "paper_smoke") == tmp_path / "smoke"
    assert prepared_run_folder(_args(allow_dirty=True, out=tmp_path / "allowed"), "p",
                               "powered") == tmp_path / "allowed"
    assert not any(tmp_path.iterdir())  # checked, nothing written


def test_refusal_needs_a_dirty_tree_and_reads_missing_flags_as_not_given(tmp_path, monkeypatch):
    monkeypatch.setattr(shared.tracking.runs, "git_revision", lambda path=None: DIRTY[:-6])
    assert prepared_run_folder(_args(preset="paper", out=tmp_path / "clean"), "p", "paper") \
        == tmp_path / "clean"
    monkeypatch.setattr(shared.tracking.runs, "git_revision", lambda path=None: DIRTY)
    bare = argparse.Namespace(preset="paper", out=tmp_path / "bare", seed=0, resume=False,
                              overwrite=False)  # a parser without --smoke / --allow-dirty
    with pytest.raises(DirtyTreeError, match="--allow-dirty"):
        prepared_run_folder(bare, "p", "paper")
    assert not (tmp_path / "bare").exists()


def test_allow_dirty_flag_is_parsed():
    from shared.cli.app import build_parser

    parser = build_parser()
    assert parser.parse_args(["hrpqct", "run", "--allow-dirty"]).allow_dirty is True
    assert parser.parse_args(["bar-ad", "run"]).allow_dirty is False
