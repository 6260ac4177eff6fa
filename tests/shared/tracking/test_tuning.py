"""Keras Tuner searches recorded in the store: every kind, failures, pruning, outages."""

import json
import warnings
from pathlib import Path

import keras
import keras_tuner
import pytest

from shared import cli
from shared.tracking.spool import read_spool
from shared.tracking.store import StoreUnreachableError, open_store
from shared.testing.postgres import PostgresServer, find_binaries
from shared.tracking.tuning import _custom_gradient_keys, demo_data, demo_hypermodel, make_tuner


def _search(tuner, epochs=1, callbacks=None):
    x, y, xv, yv = demo_data(0)
    kwargs = {} if isinstance(tuner, keras_tuner.Hyperband) else {"epochs": epochs}
    tuner.search(x, y, validation_data=(xv, yv), batch_size=16, verbose=0,
                 callbacks=callbacks or [], **kwargs)


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband", "grid"])
def test_every_kind_records_each_trial_once(kind, tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    gradients_before = _custom_gradient_keys()
    extra = {"max_epochs": 2, "factor": 2} if kind == "hyperband" else {}
    tuner = make_tuner(kind, demo_hypermodel, objective="val_accuracy", max_trials=2,
                       store=url, experiment="exp", search_name=f"s_{kind}", group="arm",
                       directory=tmp_path / "tuner", seed=1, **extra)
    _search(tuner)
    rows = open_store(url).trials("exp", f"s_{kind}")
    oracle_ids = sorted(tuner.oracle.trials)
    assert [r["trial_id"] for r in rows] == oracle_ids and len(rows) == 2
    for row in rows:
        assert row["status"] == "completed" and row["group"] == "arm"
        assert row["duration_s"] > 0 and row["started"] < row["ended"]
        assert "val_accuracy" in row["metrics"] and "units" in row["hyperparameters"]
        assert row["host"] and row["package_version"]
        assert Path(row["model_path"]).exists()
    project = tmp_path / "tuner" / f"s_{kind}"
    assert json.loads((project / "oracle.json").read_text())["end_order"] == oracle_ids
    assert not list(project.rglob("*.tmp-*"))  # atomic writes left no temporary file
    # The per-trial gradient registrations (which keep graphs alive) were dropped.
    assert _custom_gradient_keys() == gradients_before


def test_every_trial_is_built_under_the_policy_in_force_at_creation(tmp_path):
    from shared.training.scale import set_precision

    built = []

    def hypermodel(hp):
        model = demo_hypermodel(hp)
        built.append(model.layers[-1].dtype_policy.name)
        return model

    set_precision("mixed_float16")
    tuner = make_tuner("random", hypermodel, objective="val_accuracy", max_trials=3,
                       store=f"sqlite:///{tmp_path / 'r.sqlite'}", experiment="exp",
                       search_name="policy", directory=tmp_path / "tuner", seed=1)
    _search(tuner)
    # Keras Tuner clears the session before each build, and Keras's clear_session
    # resets the dtype policy: without the tuner restoring it, every trial's model was
    # float32; only the model Keras Tuner builds up front to populate its search space
    # saw the policy.
    assert len(built) >= 3 and set(built) == {"mixed_float16"}
    assert keras.mixed_precision.global_policy().name == "mixed_float16"


def test_failed_trials_are_recorded_with_their_error(tmp_path):
    class Broken(keras_tuner.HyperModel):
        def build(self, hp):
            return demo_hypermodel(hp)

        def fit(self, hp, model, *args, **kwargs):
            raise keras_tuner.errors.FailedTrialError("no model for these hyperparameters")

    broken = Broken()

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    tuner = make_tuner("random", broken, objective="val_accuracy", max_trials=2, store=url,
                       experiment="exp", search_name="broken", directory=tmp_path / "t",
                       seed=0)
    _search(tuner)
    rows = open_store(url).trials("exp", "broken")
    assert len(rows) == 2
    assert all(r["status"] == "failed" and "no model for these" in r["error"] for r in rows)


def test_only_the_best_checkpoints_are_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    tuner = make_tuner("random", demo_hypermodel, objective="val_loss", max_trials=2, store=url,
                       experiment="exp", search_name="prune", directory=tmp_path / "t", seed=2,
                       keep_best=1)
    _search(tuner)
    best = tuner.oracle.get_best_trials(1)[0].trial_id
    rows = {r["trial_id"]: r for r in open_store(url).trials("exp", "prune")}
    assert Path(rows[best]["model_path"]).exists()
    others = [r for tid, r in rows.items() if tid != best]
    assert len(others) == 1 and all(r["model_path"] is None for r in others)
    assert len(list((tmp_path / "t" / "prune").glob("trial_*/checkpoint.weights.h5"))) == 1
    assert isinstance(tuner.get_best_models(1)[0], keras.Model)


def test_unreachable_store_fails_before_any_training(tmp_path):
    builds = []

    def counting(hp):
        builds.append(1)
        return demo_hypermodel(hp)

    with pytest.raises(StoreUnreachableError) as info:
        make_tuner("random", counting, objective="val_accuracy", max_trials=2,
                   store="postgresql://lab:pw@127.0.0.1:9/results", experiment="exp",
                   search_name="s", directory=tmp_path / "t", seed=0)
    assert "postgresql://lab:***@127.0.0.1:9/results" in str(info.value)
    assert builds == [] and not (tmp_path / "t").exists()


def test_seed_and_names_are_checked(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    common = dict(objective="val_accuracy", max_trials=1, store=url, experiment="e",
                  directory=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        make_tuner("random", demo_hypermodel, search_name="s", seed=None, **common)
    with pytest.raises(ValueError, match="kind"):
        make_tuner("evolution", demo_hypermodel, search_name="s", seed=0, **common)
    with pytest.raises(ValueError, match="search_name"):
        make_tuner("random", demo_hypermodel, search_name="a/b", seed=0, **common)


class _StopServer(keras.callbacks.Callback):
    """Stops the PostgreSQL server when the n-th trial starts training."""

    def __init__(self, server, at_trial):
        super().__init__()
        self.server, self.at_trial = server, at_trial
        self.count = 0

    def __deepcopy__(self, memo):
        # Keras Tuner deep-copies callbacks for every trial; this one must count trials.
        return self

    def on_train_begin(self, logs=None):
        self.count += 1
        if self.count == self.at_trial:
            self.server.stop_server()


class _CutStore(keras.callbacks.Callback):
    """Makes the tuner's store unreachable when the n-th trial starts training."""

    def __init__(self, store, at_trial):
        super().__init__()
        self.store, self.at_trial = store, at_trial
        self.count = 0

    def __deepcopy__(self, memo):
        return self

    def on_train_begin(self, logs=None):
        self.count += 1
        if self.count != self.at_trial:
            return

        def down(*args, **kwargs):
            raise StoreUnreachableError("results store is unreachable: cut by the test")

        for name in ("record_trial", "clear_model_path", "trials", "ping"):
            setattr(self.store, name, down)


def test_no_row_points_at_a_checkpoint_deleted_during_an_outage(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    tuner = make_tuner("random", demo_hypermodel, objective="val_loss", max_trials=5, store=url,
                       experiment="exp", search_name="outage", directory=tmp_path / "t",
                       seed=4, keep_best=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _search(tuner, callbacks=[_CutStore(tuner.results_store, at_trial=2)])
    assert cli.main(["store", "sync", "--spool", str(tuner.spool_path), "--store", url]) == 0
    rows = open_store(url).trials("exp", "outage")
    assert len(rows) == 5
    kept = [r for r in rows if r["model_path"] is not None]
    best = tuner.oracle.get_best_trials(1)[0].trial_id
    assert [r["trial_id"] for r in kept] == [best] and Path(kept[0]["model_path"]).exists()
    assert len(list((tmp_path / "t" / "outage").glob("trial_*/checkpoint.weights.h5"))) == 1
    assert any(r["op"] == "checkpoint_removed" for r in read_spool(tuner.spool_path))


@pytest.mark.slow
@pytest.mark.postgres
def test_store_lost_mid_search_then_sync(tmp_path):
    if find_binaries() is None:
        pytest.skip("PostgreSQL server binaries not installed")
    with PostgresServer() as server:
        url = server.create_database("lab")
        tuner = make_tuner("random", demo_hypermodel, objective="val_accuracy", max_trials=3,
                           store=url, experiment="exp", search_name="outage",
                           directory=tmp_path / "t", seed=3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _search(tuner, callbacks=[_StopServer(server, at_trial=2)])
        assert any("unreachable" in str(w.message) for w in caught)
        assert len(tuner.oracle.trials) == 3  # training went on
        spool = tuner.spool_path
        assert spool.exists() and spool.parent == tmp_path / "t"
        spooled = read_spool(spool)
        # trial 1 reached the store; trials 2 and 3 ended while it was down
        assert sorted({r["trial_id"] for r in spooled if r["status"] == "completed"}) == \
            sorted(tuner.oracle.trials)[1:]
        server.start_server()
        assert {r["trial_id"] for r in open_store(url).trials("exp", "outage")} == \
            set(sorted(tuner.oracle.trials)[:2])  # trial 2's "running" row was written
        assert cli.main(["store", "sync", "--spool", str(spool), "--store", url]) == 0
        assert cli.main(["store", "sync", "--spool", str(spool), "--store", url]) == 0
        rows = open_store(url).trials("exp", "outage")
        assert sorted(r["trial_id"] for r in rows) == sorted(tuner.oracle.trials)
        assert all(r["status"] == "completed" and r["duration_s"] > 0 for r in rows)


def test_only_the_chief_may_overwrite(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    project = tmp_path / "t" / "dist"
    project.mkdir(parents=True)
    (project / "keep.txt").write_text("chief's files")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "9")
    with pytest.warns(RuntimeWarning, match="only the chief may overwrite"):
        tuner = make_tuner("random", demo_hypermodel, objective="val_accuracy", max_trials=1,
                           store=url, experiment="e", search_name="dist",
                           directory=tmp_path / "t", seed=0, overwrite=True)
    assert (project / "keep.txt").exists()
    assert tuner.spool_path.name == "dist.tuner0.spool.jsonl"


class _FreezeServer(_StopServer):
    """Freezes (SIGSTOP) the PostgreSQL server when the n-th trial starts training."""

    def on_train_begin(self, logs=None):
        self.count += 1
        if self.count == self.at_trial:
            self.server.freeze()


@pytest.mark.slow
@pytest.mark.postgres
def test_stalled_store_spools_and_the_search_finishes(tmp_path):
    import time

    if find_binaries() is None:
        pytest.skip("PostgreSQL server binaries not installed")
    with PostgresServer() as server:
        url = server.create_database("lab")
        store = open_store(url, write_timeout=2)
        tuner = make_tuner("random", demo_hypermodel, objective="val_accuracy", max_trials=3,
                           store=store, experiment="exp", search_name="stall",
                           directory=tmp_path / "t", seed=3)
        started = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                _search(tuner, callbacks=[_FreezeServer(server, at_trial=2)])
            elapsed = time.perf_counter() - started
        finally:
            server.thaw()
        assert len(tuner.oracle.trials) == 3  # training went on
        # Each stalled write gives up after 2 s (and a new connection after its 10 s
        # connect timeout), far from the minutes a frozen server held a write before.
        assert elapsed < 120
        spooled = read_spool(tuner.spool_path)
        assert {r["trial_id"] for r in spooled if r["status"] == "completed"}
        assert cli.main(["store", "sync", "--spool", str(tuner.spool_path), "--store", url,
                         "--remove"]) == 0
        rows = open_store(url).trials("exp", "stall")
        assert sorted(r["trial_id"] for r in rows) == sorted(tuner.oracle.trials)
        assert all(r["status"] == "completed" for r in rows)


@pytest.mark.postgres
def test_a_write_to_a_frozen_server_fails_within_its_bound(postgres_server):
    import time

    url = postgres_server.create_database()
    store = open_store(url, connect_timeout=2, write_timeout=1.5)
    store.ensure_experiment("e")
    postgres_server.freeze()
    try:
        started = time.perf_counter()
        with pytest.raises(StoreUnreachableError, match="did not answer within 1.5 s"):
            store.ensure_experiment("f")
        assert time.perf_counter() - started < 4
        with pytest.raises(StoreUnreachableError):  # the next write is bounded too
            store.ensure_experiment("f")
        assert time.perf_counter() - started < 8
    finally:
        postgres_server.thaw()
    assert store.ensure_experiment("g") > 0  # reconnects once the server answers


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing in Keras Tuner or the suite catches it."""


@pytest.mark.parametrize("kill_after", ["trial.json written as running",
                                        "trial.json written as completed"])
def test_a_kill_between_trial_and_oracle_writes_loses_no_trial(tmp_path, kill_after):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    settings = dict(objective="val_accuracy", max_trials=3, store=url, experiment="exp",
                    search_name="kill", directory=tmp_path / "t", seed=1)
    tuner = make_tuner("random", demo_hypermodel, **settings)
    oracle = tuner.oracle
    save_trial, save = oracle._save_trial, oracle.save
    wanted = "RUNNING" if "running" in kill_after else "COMPLETED"
    armed = {"trial": None}

    def save_trial_then_arm(trial):
        save_trial(trial)
        if trial.trial_id == "1" and str(trial.status).upper().endswith(wanted):
            armed["trial"] = trial.trial_id

    def save_or_die():
        if armed["trial"] is not None:
            raise _Killed  # trial.json is on disk, oracle.json is not updated
        save()

    oracle._save_trial, oracle.save = save_trial_then_arm, save_or_die
    with pytest.raises(_Killed):
        _search(tuner)
    for leftover in (tmp_path / "t" / "kill").glob("**/*.tmp-*"):
        leftover.unlink()
    (tmp_path / "t" / "kill" / "oracle.json.tmp-999999").write_text("{")  # a torn write

    resumed = make_tuner("random", demo_hypermodel, **settings)
    _search(resumed)
    statuses = {tid: str(t.status).upper() for tid, t in resumed.oracle.trials.items()}
    assert sorted(statuses) == ["0", "1", "2"]
    assert all(s.endswith("COMPLETED") for s in statuses.values()), statuses
    rows = open_store(url).trials("exp", "kill")
    assert sorted(r["trial_id"] for r in rows) == ["0", "1", "2"]
    assert all(r["status"] == "completed" and r["started"] and r["ended"] for r in rows)
    assert not list((tmp_path / "t" / "kill").glob("**/*.tmp-*"))
