"""Comparison reports and the `where` filter."""

import json

import numpy as np
import pytest
from scipy import stats

from shared import cli
from shared.report import parse_where, report_from_store, select_values, write_comparison_report
from shared.tracking.store import open_store


def _fill(store):
    rng = np.random.default_rng(11)
    cce = rng.normal(0.80, 0.02, 8)
    heat = rng.normal(0.84, 0.02, 8)
    for arm, values in (("cce", cce), ("heatmap", heat)):
        for seed, value in enumerate(values):
            model = f"{arm}_seed{seed}"
            store.record_evaluation("exp1", model, "accuracy", value, group=arm,
                                    extra={"seed": seed, "arch": "vgg"})
            # val_accuracy decides which models pass the filter: odd seeds are "bad".
            store.record_evaluation("exp1", model, "val_accuracy", 0.99 if seed % 2 == 0 else 0.5,
                                    split="val", group=arm)
    return cce, heat


def test_write_comparison_report_files_and_json(tmp_path):
    groups = {"a": [0.1, 0.2, 0.3, 0.25, 0.15], "b": [0.3, 0.4, 0.35, 0.5, 0.45]}
    path = write_comparison_report(groups, metric="dice", out_dir=tmp_path / "r", title="T",
                                   description="desc", extra_markdown="Extra words.",
                                   provenance={"store": "postgresql://lab:s3cret@db/x"})
    assert path == tmp_path / "r" / "report.md"
    text = path.read_text()
    assert "Decision path" in text and "Extra words." in text and "Cohen's d" in text
    assert "s3cret" not in text and "lab:***@db" in text
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    welch = stats.ttest_ind(groups["a"], groups["b"], equal_var=False)
    assert data["comparison"]["test"]["p_value"] == pytest.approx(welch.pvalue)
    assert data["values"] == groups
    for rel in data["figures"].values():
        assert (tmp_path / "r" / rel).stat().st_size > 1000


def test_report_from_store_with_where(store_url, tmp_path):
    store = open_store(store_url)
    cce, heat = _fill(store)
    path = report_from_store(store, "exp1", "accuracy", where="val_accuracy > 0.95",
                             out_dir=tmp_path / "rep")
    data = json.loads((path.parent / "report.json").read_text())
    assert data["values"]["cce"] == pytest.approx(cce[::2].tolist())
    assert data["values"]["heatmap"] == pytest.approx(heat[::2].tolist())
    expected = stats.ttest_ind(cce[::2], heat[::2], equal_var=False)
    if data["comparison"]["test"]["test"] == "welch_t":
        assert data["comparison"]["test"]["p_value"] == pytest.approx(expected.pvalue)
    assert data["provenance"]["where"] == "val_accuracy > 0.95"


def test_cli_report_json_equals_scipy(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    cce, heat = _fill(open_store(url))
    code = cli.main(["report", "--store", url, "--experiment", "exp1", "--metric", "accuracy",
                     "--where", "seed >= 0 and (group == 'cce' or group == \"heatmap\")",
                     "--out", str(tmp_path / "out"), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    comparison = data["comparison"]
    for name, values in (("cce", cce), ("heatmap", heat)):
        assert comparison["groups"][name]["shapiro"]["p_value"] == pytest.approx(
            stats.shapiro(values).pvalue)
    if comparison["all_normal"]:
        ref = stats.ttest_ind(cce, heat, equal_var=False)
    else:
        ref = stats.mannwhitneyu(cce, heat, alternative="two-sided")
    assert comparison["test"]["p_value"] == pytest.approx(ref.pvalue)
    assert (tmp_path / "out" / "report.html").exists()


def test_cli_report_errors_are_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    _fill(open_store(url))
    code = cli.main(["report", "--store", url, "--experiment", "exp1", "--metric", "accuracy",
                     "--where", "no_such_metric > 1", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "unknown name 'no_such_metric'" in capsys.readouterr().err


def test_by_extra_field_and_split():
    rows = [{"model_id": f"m{i}", "metric": "acc", "value": float(i), "split": "test",
             "group": None, "extra": {"arch": "a" if i < 3 else "b"}} for i in range(6)]
    groups, models = select_values(rows, "acc", by="arch")
    assert groups == {"a": [0.0, 1.0, 2.0], "b": [3.0, 4.0, 5.0]}
    groups, _ = select_values(rows, "acc", by="extra.arch", where="value != 4")
    assert groups["b"] == [3.0, 5.0]
    with pytest.raises(ValueError, match="metric 'loss'"):
        select_values(rows, "loss")


@pytest.mark.parametrize("text,row,expected", [
    ("acc > 0.5", {"acc": 0.7}, True),
    ("acc > 0.5 and not (group == 'cce')", {"acc": 0.7, "group": "cce"}, False),
    ("acc < 0.5 or group = 'cce'", {"acc": 0.7, "group": "cce"}, True),
    ("missing == null", {}, True),
    ("missing > 1", {}, False),
    ("`auc@0.5` >= 1e-1", {"auc@0.5": 0.2}, True),
    ("seed == '3'", {"seed": 3}, True),
    ("flag == true", {"flag": True}, True),
])
def test_where_grammar(text, row, expected):
    assert parse_where(text).evaluate(row.get) is expected


@pytest.mark.parametrize("text", ["__import__('os').system('x')", "acc >", "acc > 1 and",
                                  "(acc > 1", "acc > 1; DROP TABLE trials", "acc + 1 > 2", ""])
def test_where_rejects_anything_else(text):
    with pytest.raises(ValueError, match="where"):
        parse_where(text)


def test_long_where_chains_evaluate_and_deep_nesting_is_refused_in_one_line():
    chain = " and ".join(f"v{i} >= {i}" for i in range(600))
    row = {f"v{i}": i for i in range(600)}
    assert parse_where(chain).evaluate(row.get) is True
    assert parse_where(chain.replace("v599 >= 599", "v599 > 599")).evaluate(row.get) is False
    assert parse_where(" or ".join(["x == 1"] * 600)).evaluate({"x": 1}.get) is True
    deep = "(" * 330 + "x == 1" + ")" * 330
    with pytest.raises(ValueError) as info:
        parse_where(deep)
    message = str(info.value)
    assert "deeper than 32 levels" in message and len(message) < 200
    assert parse_where("(" * 30 + "x == 1" + ")" * 30).evaluate({"x": 1}.get) is True
    with pytest.raises(ValueError, match="at most 10000") as info:
        parse_where("x == 1 and " * 2000 + "x == 1")
    assert len(str(info.value)) < 200
