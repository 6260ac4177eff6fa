import json
import math
import textwrap
import uuid

import pytest

from benchmarks import run as runner
from benchmarks.run import check_target, kept_rows, row_problem

GOOD = {"name": "r", "value": 1.0, "unit": "x", "target": "<= 1.15", "detail": "d"}


def test_rows_of_modules_not_run_are_kept_with_their_time(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"created": "2026-01-01T00:00:00+00:00", "results": [
        {"name": "a1", "module": "benchmarks.bench_a", "value": 1.0},
        {"name": "b1", "module": "benchmarks.bench_b", "value": 2.0,
         "measured": "2026-02-01T00:00:00+00:00"},
        {"name": "c1", "module": "benchmarks.bench_c", "value": 3.0}]}))
    kept = kept_rows(path, {"benchmarks.bench_c"})
    assert [r["name"] for r in kept] == ["a1", "b1"]
    # A row without its own time takes the file's; a row with one keeps it.
    assert kept[0]["measured"] == "2026-01-01T00:00:00+00:00"
    assert kept[1]["measured"] == "2026-02-01T00:00:00+00:00"


def test_missing_or_unreadable_results_keep_nothing(tmp_path):
    assert kept_rows(tmp_path / "absent.json", set()) == []
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert kept_rows(bad, set()) == []


def test_targets():
    assert check_target(1.08, "<= 1.15") is True
    assert check_target(3.1, ">= 10") is False
    assert check_target(5.0, None) is None
    assert check_target(2.0, "> 1e0") is True
    assert check_target(2.0, " < 2 ") is False
    for bad in (1.15, "1.15", "<= ", "== 1", "<= 1.1.5", "<= 1e"):
        with pytest.raises(ValueError, match="target must be None or a string"):
            check_target(1.0, bad)


@pytest.mark.no_keras
@pytest.mark.parametrize("change, reason", [
    ({"target": 1.15}, "target must be None or a string like '<= 1.15'"),
    ({"value": float("nan")}, "value must be a finite number"),
    ({"value": float("inf")}, "value must be a finite number"),
    ({"value": "1.0"}, "value must be a finite number"),
    ({"value": True}, "value must be a finite number"),
    ({"name": 3}, "name must be a str"),
    ({"unit": None}, "unit must be a str"),
    ({"detail": 1}, "detail must be a str"),
    ({"passed": True}, "unexpected key 'passed'"),
])
def test_row_problem_names_the_broken_field(change, reason):
    assert row_problem(GOOD) is None
    assert row_problem({**GOOD, "target": None, "value": 3}) is None
    assert reason in row_problem({**GOOD, **change})


@pytest.mark.no_keras
def test_row_problem_missing_keys_and_non_dicts():
    assert row_problem({"name": "r", "value": 1.0}) == "missing keys 'unit', 'target'"
    assert row_problem({k: v for k, v in GOOD.items() if k != "unit"}) == "missing key 'unit'"
    assert "a row must be a dict" in row_problem([1.0])


# --- the runner on fake benchmark modules -------------------------------------------

FAKE_MODULES = {
    "bench_good": """
        def run(short=False):
            return [{"name": "good_ratio", "value": 0.5 if short else 1.0, "unit": "x",
                     "target": "<= 1.15", "detail": "short" if short else "full"}]
    """,
    "bench_numeric_target": """
        def run(short=False):
            return [{"name": "ok_row", "value": 1.0, "unit": "x", "target": None},
                    {"name": "ratio", "value": 1.0, "unit": "x", "target": 1.15}]
    """,
    "bench_nan_value": """
        def run(short=False):
            return [{"name": "ratio", "value": float("nan"), "unit": "x", "target": None}]
    """,
    "bench_missing_key": """
        def run(short=False):
            return [{"name": "ratio", "value": 1.0, "target": None}]
    """,
    "bench_raises": """
        def run(short=False):
            raise ValueError("no data\\non two lines")
    """,
    "bench_no_rows": """
        def run(short=False):
            return []
    """,
    "bench_exits": """
        import os
        import sys

        def run(short=False):
            sys.stderr.write("about to die\\n")
            sys.stderr.flush()
            os._exit(3)
    """,
    "bench_missed_target": """
        def run(short=False):
            return [{"name": "slow_ratio", "value": 2.0, "unit": "x", "target": "<= 1.15"}]
    """,
    "bench_no_short": """
        def run():
            return [{"name": "ratio", "value": 1.0, "unit": "x", "target": None}]
    """,
}

EXPECTED_ERRORS = {
    "bench_numeric_target": "row 1 ('ratio'): target must be None or a string like '<= 1.15'",
    "bench_nan_value": "row 0 ('ratio'): value must be a finite number. Received: nan",
    "bench_missing_key": "row 0 ('ratio'): missing key 'unit'",
    "bench_raises": "ValueError: no data on two lines",
    "bench_no_rows": "run() returned no rows",
}


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package of fake benchmark modules, importable here and in child interpreters."""
    name = f"fakebench_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / "src" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for module, source in FAKE_MODULES.items():
        (pkg / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "src"))
    # The machine description imports TensorFlow; these tests do not need it.
    monkeypatch.setattr(runner, "machine_info", lambda: {"cpu_count": 0})
    return name


def _main(package, modules, tmp_path, *extra):
    out = tmp_path / f"results-{uuid.uuid4().hex[:6]}.json"
    args = [a for m in modules for a in ("--module", f"{package}.{m}")]
    status = runner.main(args + ["--json", str(out), "--timeout", "60", *extra])
    return status, json.loads(out.read_text())


@pytest.mark.no_keras
@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "subprocess"])
def test_bad_rows_and_raising_modules_become_failed_rows(fake_package, tmp_path, in_process):
    modules = ["bench_good", *EXPECTED_ERRORS]
    mode = ["--in-process"] if in_process else []
    status, payload = _main(fake_package, modules, tmp_path, *mode)
    assert status == 0
    rows = payload["results"]
    assert payload["machine"] == {"cpu_count": 0}
    good = [r for r in rows if r["module"].endswith("bench_good")]
    assert [(r["name"], r["value"], r["passed"], r["detail"]) for r in good] == [
        ("good_ratio", 1.0, True, "full")]
    for module, reason in EXPECTED_ERRORS.items():
        full = f"{fake_package}.{module}"
        failed = [r for r in rows if r["module"] == full and r.get("error")]
        assert len(failed) == 1, (module, rows)
        assert failed[0]["error"].startswith(f"{full}: ")
        assert reason in failed[0]["error"]
        assert "\n" not in failed[0]["error"]
        assert failed[0]["passed"] is False and failed[0]["value"] is None
    # A module's valid rows stay when another of its rows is refused.
    assert [r["name"] for r in rows if r["module"].endswith("bench_numeric_target")] == [
        "ok_row", "ratio"]
    status, _ = _main(fake_package, modules, tmp_path, "--strict", *mode)
    assert status == 1


@pytest.mark.no_keras
def test_a_child_that_dies_is_a_failed_row(fake_package, tmp_path):
    status, payload = _main(fake_package, ["bench_exits", "bench_good"], tmp_path)
    assert status == 0
    dead, good = payload["results"]
    assert dead["error"] == f"{fake_package}.bench_exits: subprocess exit status 3: about to die"
    assert good["passed"] is True


@pytest.mark.no_keras
def test_table_shows_failed_rows(fake_package, tmp_path, capsys):
    _main(fake_package, ["bench_raises", "bench_good"], tmp_path, "--in-process")
    out = capsys.readouterr().out
    assert "bench_raises" in out and "error" in out
    assert f"bench_raises: error: {fake_package}.bench_raises: ValueError: no data" in out


@pytest.mark.no_keras
def test_strict_counts_missed_targets_except_in_short_mode(fake_package, tmp_path):
    modules = ["bench_good", "bench_missed_target"]
    assert _main(fake_package, modules, tmp_path, "--in-process")[0] == 0
    assert _main(fake_package, modules, tmp_path, "--in-process", "--strict")[0] == 1
    assert _main(fake_package, ["bench_good"], tmp_path, "--in-process", "--strict")[0] == 0
    # Short figures are smoke checks: only a failed row makes a short run fail.
    status, payload = _main(fake_package, modules, tmp_path, "--in-process", "--short", "--strict")
    assert status == 0
    assert payload["short"] is True
    good = payload["results"][0]
    assert (good["value"], good["detail"], good["short"]) == (0.5, "short", True)


@pytest.mark.no_keras
def test_short_mode_refuses_a_module_without_short(fake_package, tmp_path):
    status, payload = _main(fake_package, ["bench_no_short"], tmp_path, "--in-process", "--short",
                            "--strict")
    assert status == 1
    assert "run() takes no 'short' argument" in payload["results"][0]["error"]
    status, payload = _main(fake_package, ["bench_no_short"], tmp_path, "--in-process")
    assert status == 0 and payload["results"][0]["passed"] is None


@pytest.mark.no_keras
def test_short_mode_writes_no_results_unless_asked(fake_package, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "HERE", tmp_path)
    args = ["--module", f"{fake_package}.bench_good", "--in-process"]
    assert runner.main(args + ["--short"]) == 0
    assert not (tmp_path / "results.json").exists()
    assert runner.main(args) == 0
    assert json.loads((tmp_path / "results.json").read_text())["short"] is False


# --- every real module, short mode ---------------------------------------------------


@pytest.mark.slow
def test_every_real_module_runs_in_short_mode(tmp_path, capsys):
    results = runner.HERE / "results.json"
    before = results.read_bytes() if results.exists() else None
    out = tmp_path / "short.json"
    status = runner.main(["--short", "--strict", "--json", str(out), "--timeout", "300"])
    rows = json.loads(out.read_text())["results"]
    table = capsys.readouterr().out
    failed = [r["error"] for r in rows if r.get("error")]
    assert not failed, failed
    assert status == 0, table
    modules = runner.discover()
    assert len(modules) >= 6
    for module in modules:
        mine = [r for r in rows if r["module"] == module]
        assert mine, f"{module} returned no rows"
        for row in mine:
            contract = {k: row[k] for k in runner.REQUIRED_KEYS + runner.OPTIONAL_KEYS if k in row}
            assert row_problem(contract) is None, row
            assert math.isfinite(row["value"]) and row["short"] is True
    with capsys.disabled():
        seconds = {m.rsplit(".", 1)[-1]: next(r["module_seconds"] for r in rows if r["module"] == m)
                   for m in modules}
        print(f"\nshort-mode seconds per module: {seconds}")
    assert (results.read_bytes() if results.exists() else None) == before
