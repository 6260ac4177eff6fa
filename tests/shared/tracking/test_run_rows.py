"""Rows of one run never replace another run's: model ids are unique per run (paper,
preset, seed, arm / fold / unit) and every evaluation row names the run that wrote it."""

import pytest

from shared.tracking.sink import ResultsSink
from shared.tracking.spool import sync_spool
from shared.tracking.store import open_store, run_identity

pytestmark = pytest.mark.no_keras


def _fold_rows(store_url, out, seed):
    from bar_ad.config import get_config
    from bar_ad.experiment import open_results_sink, record_fold

    config = get_config("tiny")
    sink = open_results_sink(store_url, config, out)
    for fw in ("bar_recon", "scratch"):
        for k in range(2):
            fold = {"fold": k, "seed": seed * 1000 + 10 * k,
                    "scores": {"precision": 50.0, "recall": 25.0, "accuracy": 60.0 + seed}}
            record_fold(sink, config, fw, fold, seed=seed)
    sink.close()


def test_two_seeds_of_one_paper_keep_both_seeds_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    _fold_rows(url, tmp_path / "seed0", seed=0)
    store = open_store(url)
    before = store.evaluations("bar_ad_tiny", metric="accuracy")
    assert len(before) == 4
    _fold_rows(url, tmp_path / "seed1", seed=1)
    after = store.evaluations("bar_ad_tiny", metric="accuracy")
    store.close()
    assert len(after) == 8
    assert sorted(r["value"] for r in after) == [60.0] * 4 + [61.0] * 4
    assert {r["extra"]["run"] for r in after} == {run_identity(tmp_path / "seed0"),
                                                 run_identity(tmp_path / "seed1")}


def test_a_row_of_another_run_is_never_replaced(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    first = open_store(url, run_dir=tmp_path / "paper_run")
    first.record_evaluation("exp", "paper_seed0_a", "acc", 0.9)
    first.close()
    second = open_store(url, run_dir=tmp_path / "tiny_run")
    with pytest.raises(ValueError) as info:
        second.record_evaluation("exp", "paper_seed0_a", "acc", 0.1)
    message = str(info.value)
    assert "paper_run" in message and "tiny_run" in message and "'paper_seed0_a'" in message
    assert [r["value"] for r in second.evaluations("exp")] == [0.9]
    second.close()


def test_the_same_run_resumed_updates_its_own_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    for value in (0.5, 0.7):
        store = open_store(url, run_dir=tmp_path / "run")
        store.record_evaluation("exp", "m", "acc", value)
        store.close()
    store = open_store(url)
    assert [r["value"] for r in store.evaluations("exp")] == [0.7]
    store.close()


def test_a_store_with_rows_of_unnamed_runs_is_refused_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    old = open_store(url)
    old.record_evaluation("heatmap_loss_exp1", "cce-0", "acc", 0.9)  # as older versions wrote
    old.close()
    store = open_store(url, run_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"rows written before each row named its run "
                                         r"\(e.g. model 'cce-0'\).*new store"):
        store.record_evaluation("heatmap_loss_exp1", "tiny_s0_cce-0", "acc", 0.5)
    store.record_evaluation("other_experiment", "m", "acc", 0.5)  # other experiments are fine
    store.close()


def test_spooled_rows_keep_their_run_through_sync(tmp_path):
    (tmp_path / "blocker").write_text("")
    sink = ResultsSink.open(f"sqlite:///{tmp_path / 'blocker' / 's.sqlite'}", tmp_path / "a")
    assert sink.store is None
    sink.record_evaluation("exp", "m", "acc", 0.5)
    sink.close()
    url = f"sqlite:///{tmp_path / 'good.sqlite'}"
    other = open_store(url, run_dir=tmp_path / "b")
    other.record_evaluation("exp", "m", "acc", 0.9)
    other.close()
    store = open_store(url)
    with pytest.raises(ValueError, match="was written by run"):
        sync_spool(store, tmp_path / "a" / "results.spool.jsonl")
    assert [r["value"] for r in store.evaluations("exp")] == [0.9]
    store.close()


@pytest.mark.slow
def test_two_tiny_bar_ad_runs_at_two_seeds_keep_both_seeds_rows(tmp_path):
    from shared.io.run_folder import is_run_output
    from shared.testing.bad_input import run_cli

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    counts = []
    for seed in (0, 1):
        code, out, err = run_cli(["bar-ad", "run", "--preset", "tiny", "--seed", seed,
                                  "--out", tmp_path / f"seed{seed}", "--store", url,
                                  "--no-progress"])
        assert code == 0, err
        store = open_store(url)
        rows = store.evaluations("bar_ad_tiny")
        store.close()
        counts.append(len(rows))
    assert counts[1] == 2 * counts[0] > 0
    # Everything the run wrote is what --overwrite may remove, and nothing else.
    assert all(is_run_output(p.name) for p in (tmp_path / "seed0").iterdir())
    assert {r["extra"]["seed"] // 1000 for r in rows} == {0, 1}


def test_a_model_without_a_value_is_reported_not_silently_dropped(caplog):
    from shared.report.selection import select_values

    rows = [{"model_id": f"m{i}", "metric": "acc", "value": v, "split": "test",
             "group": "ab"[i % 2], "extra": {}} for i, v in enumerate([0.5, None, 0.7, 0.6])]
    with caplog.at_level("WARNING"):
        groups, models = select_values(rows, "acc")
    assert groups == {"a": [0.5, 0.7], "b": [0.6]} and "m1" not in models
    assert "1 model(s) have no value" in caplog.text and "m1" in caplog.text
