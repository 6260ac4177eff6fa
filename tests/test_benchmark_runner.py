import json

from benchmarks.run import check_target, kept_rows


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
