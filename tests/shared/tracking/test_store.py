"""The results store on SQLite and PostgreSQL: schema, upserts, errors."""

import json

import sqlalchemy as sa
import pytest

from shared.tracking.spool import append_spool, read_spool, sync_spool
from shared.tracking.store import SchemaVersionError, StoreUnreachableError, mask_url, open_store

ENV = {"host": "testhost", "package_version": "0.0", "git_revision": "abc"}


def test_tables_created_and_schema_version_recorded(store_url):
    store = open_store(store_url)
    assert store.ping() is True
    assert store.schema_version() == 1
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"meta", "experiments", "searches", "trials", "evaluations"} <= names
    # Opening again is harmless (tables exist, version matches).
    assert open_store(store_url).schema_version() == 1


def test_schema_version_mismatch_is_refused(store_url):
    store = open_store(store_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE meta SET value = '999' WHERE key = 'schema_version'"))
    with pytest.raises(SchemaVersionError, match="schema version 999.*expects 1"):
        open_store(store_url)


def test_trial_upsert_is_idempotent_and_keeps_every_field(store_url):
    store = open_store(store_url)
    sid = store.start_search("exp", "search", group="heatmap", config={"kind": "random"})
    assert store.start_search("exp", "search") == sid
    store.record_trial(sid, "03", hyperparameters={"lr": 0.1}, metrics={}, status="running",
                       started=100.0, **ENV)
    store.record_trial(sid, "03", hyperparameters={"lr": 0.1}, metrics={"acc": 0.75,
                       "loss": float("nan")}, status="completed", started=100.0, ended=112.5,
                       model_path="/m/ckpt.h5", **ENV)
    rows = store.trials("exp")
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "completed" and row["group"] == "heatmap"
    assert row["duration_s"] == pytest.approx(12.5)
    assert row["metrics"] == {"acc": 0.75, "loss": None}
    assert row["hyperparameters"] == {"lr": 0.1}
    assert row["started"].startswith("1970-01-01T00:01:40")
    assert row["model_path"] == "/m/ckpt.h5" and row["host"] == "testhost"
    assert row["git_revision"] == "abc" and row["package_version"] == "0.0"


def test_failed_trial_keeps_its_error(store_url):
    store = open_store(store_url)
    sid = store.start_search("exp", "s")
    store.record_trial(sid, "0", hyperparameters={}, metrics={}, status="failed",
                       error="ValueError: boom", **ENV)
    assert store.trials(search_name="s")[0]["error"] == "ValueError: boom"


def test_evaluation_upsert(store_url):
    store = open_store(store_url)
    store.record_evaluation("exp", "m1", "accuracy", 0.9, group="cce", extra={"seed": 1})
    store.record_evaluation("exp", "m1", "accuracy", 0.8, group="cce", extra={"seed": 1})
    store.record_evaluation("exp", "m1", "accuracy", 0.7, split="val", group="cce")
    rows = store.evaluations("exp", "accuracy")
    assert [(r["split"], r["value"]) for r in rows] == [("test", 0.8), ("val", 0.7)]
    assert rows[0]["extra"] == {"seed": 1}
    assert store.evaluations("other") == []


def test_bad_arguments_name_the_field(store_url):
    store = open_store(store_url)
    sid = store.start_search("exp", "s")
    with pytest.raises(ValueError, match="status"):
        store.record_trial(sid, "0", hyperparameters={}, metrics={}, status="done")
    with pytest.raises(ValueError, match="search_id"):
        store.record_trial(sid + 100, "0", hyperparameters={}, metrics={}, **ENV)
    with pytest.raises(ValueError, match="value of 'acc'"):
        store.record_evaluation("exp", "m", "acc", "high")


def test_unreachable_postgres_names_url_and_masks_password():
    with pytest.raises(StoreUnreachableError) as info:
        open_store("postgresql://lab:s3cret@127.0.0.1:9/results", connect_timeout=2)
    message = str(info.value)
    assert "postgresql://lab:***@127.0.0.1:9/results" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("url,shown", [
    ("postgresql://lab:s3cret@db/results", "postgresql://lab:***@db/results"),
    ("postgresql://lab@db/results?password=s3cret", "postgresql://lab@db/results?password=***"),
    ("postgresql://lab@db/r?sslmode=require&password=s3cret&x=1",
     "postgresql://lab@db/r?password=***&sslmode=require&x=1"),  # query sorted
    ("host=db user=lab password=s3cret dbname=r", "host=db user=lab password=*** dbname=r"),
    ("host=db password='s3 cret' dbname=r", "host=db password=*** dbname=r"),
    # An unencoded '@' in the password: everything up to the last '@' of the netloc.
    ("postgresql://lab:p@ss@db/results", "postgresql://lab:***@db/results"),
    ("postgresql://lab:a@b@c@db:5432/r?sslmode=require",
     "postgresql://lab:***@db:5432/r?sslmode=require"),
    ("postgresql://lab:s3cret@db/r?note=a@b", "postgresql://lab:***@db/r?note=a%40b"),
])
def test_mask_url_hides_every_password_form(url, shown):
    assert mask_url(url) == shown


def test_a_driver_message_repeating_the_host_is_scrubbed():
    from shared.tracking.store import scrub

    url = "postgresql://lab:pa55@w0rd@db.lab/r"
    text = scrub('could not translate host name "w0rd@db.lab" to address', url)
    assert text == 'could not translate host name "***@db.lab" to address'
    assert scrub("password pa55@w0rd rejected", url) == "password *** rejected"


def test_doctor_prints_the_store_url_masked(capsys):
    from shared.cli.doctor import run_doctor

    assert run_doctor("postgresql://lab:s3cret@127.0.0.1:9/results?password=s3cret") == 1
    out = capsys.readouterr().out
    assert "NOT reachable: postgresql://lab:***@127.0.0.1:9/results?password=***" in out
    assert "s3cret" not in out


def test_unreachable_sqlite_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnreachableError, match="unreachable"):
        open_store(f"sqlite:///{blocker / 'sub' / 'r.sqlite'}")


def test_bad_url_is_a_value_error():
    with pytest.raises(ValueError, match="not supported"):
        open_store("mysql://u@h/db")
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_spool_round_trip_is_idempotent(store_url, tmp_path):
    spool = tmp_path / "s.spool.jsonl"
    for i in range(3):
        append_spool(spool, {"op": "trial", "experiment": "exp", "search_name": "s",
                             "search_group": "g", "trial_id": str(i), "hyperparameters": {"i": i},
                             "metrics": {"acc": i / 10}, "status": "completed",
                             "started": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, **ENV})
    append_spool(spool, {"op": "evaluation", "experiment": "exp", "model_id": "m",
                         "metric": "acc", "value": 0.5})
    with open(spool, "a") as handle:
        handle.write('{"op": "trial", "experi')  # torn last line of a crashed writer
    store = open_store(store_url)
    assert sync_spool(store, spool) == 4
    assert sync_spool(store, spool) == 4
    rows = store.trials("exp", "s")
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert all(r["group"] == "g" for r in rows)
    assert len(store.evaluations("exp")) == 1
    assert len(read_spool(spool)) == 4


def test_cli_store_info_and_trials(tmp_path, capsys):
    from shared import cli

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = open_store(url)
    sid = store.start_search("exp", "s")
    store.record_trial(sid, "7", hyperparameters={}, metrics={"tuner_score": 0.5},
                       duration_s=2.0, **ENV)
    assert cli.main(["store", "info", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "schema version  1" in out and "exp" in out
    assert cli.main(["store", "trials", "--store", url, "--experiment", "exp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["trial_id"] == "7"
    assert cli.main(["store", "sync", "--store", url, "--spool", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_sync_with_remove_never_loses_a_record_appended_meanwhile(tmp_path):
    import threading

    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    spool = tmp_path / "s.spool.jsonl"
    writers, per_writer = 4, 60

    def append(worker):
        for i in range(per_writer):
            append_spool(spool, {"op": "evaluation", "experiment": "exp",
                                 "model_id": f"w{worker}-{i}", "metric": "acc", "value": 0.5})

    threads = [threading.Thread(target=append, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    synced = 0
    while any(t.is_alive() for t in threads):
        if spool.exists():
            synced += sync_spool(store, spool, remove=True)
    for t in threads:
        t.join()
    if spool.exists():
        synced += sync_spool(store, spool, remove=True)
    rows = store.evaluations("exp", metric="acc")
    assert len(rows) == writers * per_writer == synced
    assert not list(tmp_path.glob("s.spool.jsonl*"))
