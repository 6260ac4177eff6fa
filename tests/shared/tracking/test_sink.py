"""A run's results sink: rows go to the store, or to the run folder's spool file when
the store is unreachable at the start or goes away during the run; `store sync`
pushes the spool later and nothing is lost."""

import pytest

from shared.tracking.sink import SPOOL_FILE, ResultsSink
from shared.tracking.spool import read_spool, sync_spool
from shared.tracking.store import StoreUnreachableError, open_store, run_identity

pytestmark = pytest.mark.no_keras


def test_reachable_store_gets_every_row(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    sink = ResultsSink.open(url, tmp_path / "run")
    sink.ensure_experiment("exp", {"preset": "tiny"})
    for i in range(3):
        sink.record_evaluation("exp", f"m{i}", "acc", i / 4, group="a", extra={"seed": i})
    sink.close()
    assert (sink.stored, sink.spooled) == (3, 0)
    assert not (tmp_path / "run" / SPOOL_FILE).exists()
    rows = open_store(url).evaluations("exp", "acc")
    run = run_identity(tmp_path / "run")  # every row names the run that wrote it
    assert [(r["model_id"], r["value"], r["extra"]) for r in rows] == [
        ("m0", 0.0, {"seed": 0, "run": run}), ("m1", 0.25, {"seed": 1, "run": run}),
        ("m2", 0.5, {"seed": 2, "run": run})]


def test_unreachable_store_spools_rows_that_sync_later(tmp_path):
    (tmp_path / "blocker").write_text("")  # a file where the store's folder should be
    sink = ResultsSink.open(f"sqlite:///{tmp_path / 'blocker' / 's.sqlite'}", tmp_path / "run")
    assert sink.store is None
    sink.ensure_experiment("exp", {})
    for i in range(4):
        sink.record_evaluation("exp", f"m{i}", "acc", 0.5, group="a")
    assert (sink.stored, sink.spooled) == (0, 4)
    store = open_store(f"sqlite:///{tmp_path / 'good.sqlite'}")
    assert sync_spool(store, tmp_path / "run" / SPOOL_FILE) == 4
    assert sorted(r["model_id"] for r in store.evaluations("exp", "acc")) == \
        ["m0", "m1", "m2", "m3"]


def test_a_store_lost_mid_run_spools_from_that_row_on(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    sink = ResultsSink.open(url, tmp_path / "run")
    sink.record_evaluation("exp", "m0", "acc", 0.1)

    def down(*args, **kwargs):
        raise StoreUnreachableError("results store is unreachable: cut by the test")

    sink.store.record_evaluation = down
    sink.record_evaluation("exp", "m1", "acc", 0.2)
    sink.record_evaluation("exp", "m2", "acc", 0.3)
    assert (sink.stored, sink.spooled) == (1, 2) and sink.store is None
    spool = tmp_path / "run" / SPOOL_FILE
    assert [r["model_id"] for r in read_spool(spool)] == ["m1", "m2"]
    store = open_store(url)
    sync_spool(store, spool)
    assert [r["model_id"] for r in store.evaluations("exp", "acc")] == ["m0", "m1", "m2"]
