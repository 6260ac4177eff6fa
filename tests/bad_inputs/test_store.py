"""Bad inputs of the results store and its commands: corrupt or foreign SQLite files,
malformed URLs, broken spool files and bad `--where` expressions each end in one
error line naming the file (or URL), the field and what was expected."""

import json
import sqlite3

import pytest

from shared.testing.bad_input import assert_one_line_error, run_cli
from shared.tracking.store import open_store

pytestmark = pytest.mark.no_keras


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory):
    """A store of several pages (so truncations cut real data)."""
    path = tmp_path_factory.mktemp("store") / "results.sqlite"
    store = open_store(f"sqlite:///{path}")
    for i in range(200):
        store.record_evaluation("exp", f"m{i}", "acc", i / 200, group="ab"[i % 2],
                                extra={"note": "x" * 200})
    store.close()
    return path


def _damaged(tmp_path, data: bytes):
    path = tmp_path / "results.sqlite"
    path.write_bytes(data)
    return path


def _info(path):
    return ["store", "info", "--store", f"sqlite:///{path}"]


@pytest.mark.parametrize("cut", [0.5, 0.1, 3000, 100])
def test_truncated_sqlite_is_reported_corrupt(filled_store, tmp_path, cut):
    data = filled_store.read_bytes()
    size = int(len(data) * cut) if cut < 1 else cut
    path = _damaged(tmp_path, data[:size])
    assert_one_line_error(_info(path), str(path), "corrupt", "expected a SQLite database")
    assert path.read_bytes() == data[:size]  # left as it was


@pytest.mark.parametrize("content", [
    b"NOT A DATABASE!!" + b"\0" * 4080,
    b"trial_id,metric\n1,0.5\n" * 50,
    b"\x89PNG\r\n\x1a\n" + b"\0" * 512,
], ids=["header", "csv", "png"])
def test_a_file_that_is_no_database(tmp_path, content):
    path = _damaged(tmp_path, content)
    assert_one_line_error(_info(path), str(path), "corrupt", "expected a SQLite database")


def test_a_page_overwritten_in_the_middle(filled_store, tmp_path):
    data = bytearray(filled_store.read_bytes())
    data[4096 * 2:4096 * 2 + 4096] = b"\xff" * 4096
    path = _damaged(tmp_path, bytes(data))
    code, out, err = run_cli(["report", "--store", f"sqlite:///{path}", "--experiment", "exp",
                              "--metric", "acc", "--by", "group"])
    assert code == 2 and "Traceback" not in err and "corrupt" in err.strip().splitlines()[-1]


def test_a_folder_where_the_file_should_be(tmp_path):
    folder = tmp_path / "results.sqlite"
    folder.mkdir()
    assert_one_line_error(_info(folder), str(folder), "is a folder", "expected a SQLite file")


def test_another_tools_database(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE trials (x INTEGER)")
    before = path.read_bytes()
    assert_one_line_error(_info(path), str(path), "not a medrepro store", "trials")
    assert path.read_bytes() == before


def test_our_tables_missing_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE trials DROP COLUMN model_path")
    assert_one_line_error(_info(path), str(path), "model_path")


@pytest.mark.parametrize("url, names", [
    ("mysql://lab@db/results", ["mysql", "expected sqlite or postgresql"]),
    ("::::", ["'::::'", "expected sqlite:///path"]),
    ("postgresql://lab:s3cret@127.0.0.1:notaport/db", ["notaport", "expected sqlite:///path"]),
    ("postgresql://lab:s3cret@127.0.0.1:9/results", ["127.0.0.1:9/results", "unreachable"]),
    ("postgresql://lab@127.0.0.1:9/results?password=s3cret", ["password=***", "unreachable"]),
], ids=["scheme", "garbage", "port", "refused", "query-password"])
def test_bad_store_urls(url, names):
    line = assert_one_line_error(["store", "info", "--store", url], *names)
    assert "s3cret" not in line


# ------------------------------------------------------------------ spool files
_TRIAL = {"op": "trial", "experiment": "e", "search_name": "s", "trial_id": "1",
          "hyperparameters": {"lr": 0.1}, "metrics": {"val_loss": 0.5}}
_EVALUATION = {"op": "evaluation", "experiment": "e", "model_id": "m", "metric": "acc",
               "value": 0.5}


def _sync(spool, store):
    return ["store", "sync", "--spool", spool, "--store", f"sqlite:///{store}"]


@pytest.mark.parametrize("lines, names", [
    (['{"op": "trial"', json.dumps(_TRIAL)], ["line 1", "not valid JSON"]),
    (["[1, 2]"], ["line 1", "expected a JSON object"]),
    (['"trial"'], ["line 1", "expected a JSON object"]),
    ([json.dumps({**_TRIAL, "op": "delete"})], ["field 'op'", "trial, evaluation"]),
    ([json.dumps({k: v for k, v in _TRIAL.items() if k != "op"})], ["field 'op'"]),
    ([json.dumps(_TRIAL), json.dumps({k: v for k, v in _TRIAL.items() if k != "search_name"})],
     ["line 2", "field 'search_name' missing"]),
    ([json.dumps({k: v for k, v in _TRIAL.items() if k != "metrics"})],
     ["field 'metrics' missing"]),
    ([json.dumps({k: v for k, v in _EVALUATION.items() if k != "model_id"})],
     ["field 'model_id' missing", "experiment, model_id, metric, value"]),
    ([json.dumps({"op": "checkpoint_removed", "experiment": "e", "search_name": "s"})],
     ["field 'trial_id' missing"]),
    ([json.dumps({**_TRIAL, "status": "weird"})], ["status", "expected one of"]),
    ([json.dumps({**_TRIAL, "started": "yesterday"})], ["started", "ISO-8601"]),
    ([json.dumps({**_TRIAL, "metrics": [1, 2]})], ["metrics", "expected a dict"]),
    ([json.dumps({**_TRIAL, "hyperparameters": "lr=0.1"})], ["hyperparameters",
                                                             "expected a dict"]),
    ([json.dumps({**_EVALUATION, "value": "high"})], ["'acc'", "expected a number"]),
    ([json.dumps({**_EVALUATION, "metric": ""})], ["metric", "non-empty"]),
], ids=["json", "array", "string", "unknown-op", "no-op", "no-search-name", "no-metrics",
        "no-model-id", "no-trial-id", "status", "started", "metrics-list",
        "hyperparameters-string", "value-string", "metric-empty"])
def test_bad_spool_records(tmp_path, lines, names):
    spool = tmp_path / "search.spool.jsonl"
    spool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = spool.read_bytes()
    assert_one_line_error(_sync(spool, tmp_path / "r.sqlite"), str(spool), *names)
    assert spool.read_bytes() == before


def test_spool_that_is_not_text(tmp_path):
    spool = tmp_path / "search.spool.jsonl"
    spool.write_bytes(b"\xff\xfe\x00{" + b"\x00" * 20)
    assert_one_line_error(_sync(spool, tmp_path / "r.sqlite"), str(spool), "not UTF-8")


def test_missing_spool_and_folder_spool(tmp_path):
    assert_one_line_error(_sync(tmp_path / "none.jsonl", tmp_path / "r.sqlite"),
                          "none.jsonl", "does not exist")
    assert_one_line_error(_sync(tmp_path, tmp_path / "r.sqlite"), str(tmp_path),
                          "is a folder")


def test_removing_sync_keeps_a_bad_spool(tmp_path):
    spool = tmp_path / "search.spool.jsonl"
    spool.write_text(json.dumps(_TRIAL) + "\n" + json.dumps({**_TRIAL, "status": "x"}) + "\n")
    assert_one_line_error(_sync(spool, tmp_path / "r.sqlite") + ["--remove"], "line 2",
                          "status")
    kept = list(tmp_path.glob("search.spool.jsonl*"))
    assert len(kept) == 1 and "status\": \"x" in kept[0].read_text()


def test_spool_with_a_byte_order_mark_is_read(tmp_path):
    spool = tmp_path / "search.spool.jsonl"
    spool.write_text("\ufeff" + json.dumps(_EVALUATION) + "\n", encoding="utf-8")
    code, out, err = run_cli(_sync(spool, tmp_path / "r.sqlite"))
    assert code == 0, err
    assert [e["value"] for e in open_store(f"sqlite:///{tmp_path / 'r.sqlite'}")
            .evaluations("e")] == [0.5]


# ------------------------------------------------------------------ reports
@pytest.mark.parametrize("where, names", [
    ("group = = 'a'", ["expected a name, number or string"]),
    ("1; DROP TABLE trials", ["unexpected character ';'"]),
    ("group = 'a' and", ["expected"]),
    ("(" * 40 + "group = 'a'" + ")" * 40, ["nest"]),
    ("group = 'a' or " * 1200 + "group = 'b'", ["expected at most 10000"]),
], ids=["double-equals", "injection", "dangling-and", "deep-nesting", "too-long"])
def test_bad_where_expressions(filled_store, where, names):
    line = assert_one_line_error(["report", "--store", f"sqlite:///{filled_store}",
                                  "--experiment", "exp", "--metric", "acc", "--by", "group",
                                  "--where", where], "where", *names)
    assert len(line) < 400


def test_report_of_an_unknown_experiment_or_metric(filled_store):
    assert_one_line_error(["report", "--store", f"sqlite:///{filled_store}", "--experiment",
                           "nope", "--metric", "acc"], "'nope'", "no evaluations")
    assert_one_line_error(["report", "--store", f"sqlite:///{filled_store}", "--experiment",
                           "exp", "--metric", "auc", "--by", "group"], "auc")
