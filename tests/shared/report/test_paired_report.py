"""Paired reports from the store: `medrepro report --pair-by FIELD`."""

import itertools
import json

import numpy as np
import pytest
from scipy import stats

from shared import cli
from shared.report import select_paired, write_paired_report
from shared.stats import holm_correction
from shared.tracking.store import open_store


def _fill(store, arms, *, experiment="exp1", run="host:/runs/a", skip=()):
    """Rows as heatmap_loss writes them: one model per arm and trial, the trial's
    index (its initial weights) in `extra`. `skip` holds (arm, trial) left out."""
    for arm, values in arms.items():
        for trial, value in enumerate(values):
            if (arm, trial) in skip:
                continue
            store.record_evaluation(experiment, f"{arm}_trial{trial}", "heart_overlap", value,
                                    group=arm, extra={"trial_index": trial, "run": run,
                                                      "kept": True})


def _arms(seed, k=2, n=9):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.5, 0.1, n)  # what the shared initial weights give every arm
    return {f"arm{i}": (base + rng.normal(0.03 * i, 0.02, n)).tolist() for i in range(k)}


def _report(tmp_path, url, *extra):
    return cli.main(["report", "--store", url, "--experiment", "exp1", "--metric",
                     "heart_overlap", "--by", "group", "--out", str(tmp_path / "out"), "--json",
                     *extra])


def test_two_arms_paired_by_trial_index_equal_scipy(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    arms = _arms(3)
    # trial 9 only in arm0, trial 2 missing from arm1: both units are dropped.
    _fill(open_store(url), {"arm0": arms["arm0"] + [0.9], "arm1": arms["arm1"]},
          skip={("arm1", 2)})
    assert _report(tmp_path, url, "--pair-by", "trial_index") == 0
    data = json.loads(capsys.readouterr().out)
    keep = [i for i in range(9) if i != 2]
    a = np.asarray(arms["arm0"])[keep]
    b = np.asarray(arms["arm1"])[keep]
    assert data["units"] == [str(i) for i in keep]
    assert data["values"] == {"arm0": pytest.approx(a.tolist()), "arm1": pytest.approx(b.tolist())}
    assert data["dropped_units"]["count"] == 2
    assert data["dropped_units"]["units"] == [{"unit": "2", "groups": ["arm0"]},
                                              {"unit": "9", "groups": ["arm0"]}]
    (pair,) = data["comparison"]["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("arm0", "arm1", 8)
    assert pair["wilcoxon"]["p"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
    assert pair["wilcoxon"]["statistic"] == pytest.approx(stats.wilcoxon(a, b).statistic)
    assert pair["paired_t"]["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert pair["paired_t"]["p_holm"] == pair["paired_t"]["p"]  # one pair: nothing to adjust
    d = a - b
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    assert pair["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert pair["mean_difference"] == pytest.approx(d.mean())
    assert data["comparison"]["friedman"] is None

    out = tmp_path / "out"
    text = (out / "report.md").read_text()
    assert "paired by `trial_index`" in text and "Dropped: 2 unit(s)" in text
    assert "2 (only in arm0); 9 (only in arm0)" in text
    assert (out / data["figures"]["paired"]).stat().st_size > 1000
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 1


def test_three_arms_friedman_then_holm_over_pairs(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    arms = _arms(5, k=3, n=10)
    _fill(open_store(url), arms)
    assert _report(tmp_path, url, "--pair-by", "trial_index") == 0
    comparison = json.loads(capsys.readouterr().out)["comparison"]
    table = np.asarray([arms[name] for name in sorted(arms)])
    assert comparison["friedman"]["p"] == pytest.approx(stats.friedmanchisquare(*table).pvalue)
    pairs = list(itertools.combinations(range(3), 2))
    assert [(p["a"], p["b"]) for p in comparison["pairs"]] == [
        (f"arm{i}", f"arm{j}") for i, j in pairs]
    for test, reference in (("wilcoxon", stats.wilcoxon), ("paired_t", stats.ttest_rel)):
        raw = [reference(table[i], table[j]).pvalue for i, j in pairs]
        assert [p[test]["p"] for p in comparison["pairs"]] == pytest.approx(raw)
        assert [p[test]["p_holm"] for p in comparison["pairs"]] == pytest.approx(
            holm_correction(raw))


def test_several_runs_pair_within_each_run(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = open_store(url)
    first, second = _arms(1, n=4), _arms(2, n=4)
    _fill(store, first, run="host:/runs/a")
    for arm, values in second.items():  # a second run reuses the trial indices
        for trial, value in enumerate(values):
            store.record_evaluation("exp1", f"b_{arm}_trial{trial}", "heart_overlap", value,
                                    group=arm, extra={"trial_index": trial, "run": "host:/runs/b"})
    assert _report(tmp_path, url, "--pair-by", "trial_index") == 2
    err = capsys.readouterr().err
    assert "group 'arm0' has two models of unit 0" in err and "run,trial_index" in err

    assert _report(tmp_path, url, "--pair-by", "run,trial_index") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["units"][:2] == ["host:/runs/a / 0", "host:/runs/a / 1"]
    a = np.asarray(first["arm0"] + second["arm0"])
    b = np.asarray(first["arm1"] + second["arm1"])
    assert data["comparison"]["pairs"][0]["wilcoxon"]["p"] == pytest.approx(
        stats.wilcoxon(a, b).pvalue)


@pytest.mark.parametrize("pair_by, message", [
    ("fold", "pair-by: unknown field 'fold'; expected a row field ['value', 'group', 'split', "
             "'model_id', 'metric'] or a key of the extra of metric 'heart_overlap': "
             "['kept', 'run', 'trial_index']"),
    ("group", "pair-by 'group': the groups are defined by 'group'"),
    ("trial_index,", "pair-by: expected a field, or fields separated by commas"),
])
def test_an_unknown_field_is_one_line_and_exit_2(tmp_path, capsys, pair_by, message):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    _fill(open_store(url), _arms(0))
    assert _report(tmp_path, url, "--pair-by", pair_by) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("medrepro: error: " + message)
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_fewer_than_two_complete_pairs_is_refused(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    arms = _arms(0, n=3)
    _fill(open_store(url), arms, skip={("arm1", 0), ("arm0", 1)})
    assert _report(tmp_path, url, "--pair-by", "trial_index") == 2
    assert capsys.readouterr().err == (
        "medrepro: error: pair-by 'trial_index': expected at least 2 units that every group "
        "(arm0, arm1) has, got 1; 2 unit(s) are in only some groups\n")


def test_where_filters_before_pairing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = open_store(url)
    arms = _arms(6, n=6)
    _fill(store, arms)
    store.record_evaluation("exp1", "arm1_trial4", "heart_overlap", arms["arm1"][4],
                            group="arm1", extra={"trial_index": 4, "run": "host:/runs/a",
                                                 "kept": False})  # diverged, not kept
    assert _report(tmp_path, url, "--pair-by", "trial_index", "--where", "kept == true") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["units"] == ["0", "1", "2", "3", "5"]
    assert data["dropped_units"]["units"] == [{"unit": "4", "groups": ["arm0"]}]
    a, b = (np.delete(np.asarray(arms[name]), 4) for name in ("arm0", "arm1"))
    assert data["comparison"]["pairs"][0]["paired_t"]["p"] == pytest.approx(
        stats.ttest_rel(a, b).pvalue)


def test_student_is_refused_with_pair_by(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    _fill(open_store(url), _arms(0))
    assert _report(tmp_path, url, "--pair-by", "trial_index", "--student") == 2
    assert "--student: expected only without --pair-by" in capsys.readouterr().err


def test_without_pair_by_the_groups_stay_independent(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    arms = _arms(4)
    _fill(open_store(url), arms)
    assert _report(tmp_path, url) == 0
    comparison = json.loads(capsys.readouterr().out)["comparison"]
    assert comparison["test"]["test"] in ("welch_t", "mann_whitney_u")
    assert "pairs" not in comparison


def test_select_paired_orders_units_numerically_and_checks_every_row():
    rows = [{"model_id": f"{g}{u}", "metric": "m", "value": float(u), "split": "test",
             "group": g, "extra": {"seed": u}} for g in ("a", "b") for u in (10, 2, 1)]
    selected = select_paired(rows, "m", pair_by="seed")
    assert selected["units"] == ["1", "2", "10"]
    assert selected["arms"] == {"a": [1.0, 2.0, 10.0], "b": [1.0, 2.0, 10.0]}
    rows.append({"model_id": "c", "metric": "m", "value": 1.0, "split": "test", "group": "b",
                 "extra": {}})
    with pytest.raises(ValueError, match="model 'c' has no field 'seed'"):
        select_paired(rows, "m", pair_by="seed")


def test_write_paired_report_degenerate_differences(tmp_path):
    # Every difference equal: the t-test is certain (p = 0), the normality check is
    # not testable, and the JSON stays strict (an infinite d_z is written as null).
    path = write_paired_report({"a": [1.0, 2.0, 3.0], "b": [0.5, 1.5, 2.5]}, metric="dice",
                               out_dir=tmp_path, title="T", pair_by="fold")
    data = json.loads((tmp_path / "report.json").read_text())
    pair = data["comparison"]["pairs"][0]
    assert pair["paired_t"]["p"] == 0.0 and pair["cohens_dz"] is None
    assert "not testable (every difference is equal)" in path.read_text()
