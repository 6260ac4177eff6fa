"""Several processes at once: concurrent writers, SIGKILL + resume, chief and workers."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared import cli
from shared.testing.subprocesses import isolated_env
from shared.tracking.store import open_store
from shared.tracking.tuning import run_demo_search

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from shared.tracking.store import open_store
    url, worker, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    store = open_store(url)
    search = store.start_search("concurrency", "shared_search", group="g")
    while not go.exists():
        time.sleep(0.01)
    for i in range(20):
        store.record_trial(search, f"w{worker}_t{i:02d}", hyperparameters={"i": i},
                           metrics={"acc": i / 20}, status="running")
        store.record_trial(search, f"w{worker}_t{i:02d}", hyperparameters={"i": i},
                           metrics={"acc": i / 20}, status="completed", duration_s=0.1)
        store.record_evaluation("concurrency", f"w{worker}_m{i:02d}", "acc", i / 20,
                                group=f"w{worker}")
""")


@pytest.mark.parametrize("writers", [4, 16])
def test_concurrent_writers_lose_and_double_nothing(store_url, tmp_path, writers):
    open_store(store_url)  # create the schema once; the writers race on the rows
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, str(w), str(go)],
                              env=isolated_env(ROOT), stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    time.sleep(1.0 + writers / 8)
    go.write_text("go")
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, errors
    store = open_store(store_url)
    rows = store.trials("concurrency")
    assert len(rows) == 20 * writers
    assert len({r["trial_id"] for r in rows}) == 20 * writers
    assert all(r["status"] == "completed" for r in rows)
    assert len(store.evaluations("concurrency", "acc")) == 20 * writers
    assert len(store.searches("concurrency")) == 1


def _demo_command(url, directory, max_trials, search_name):
    return [sys.executable, "-m", "shared", "tune-demo", "--store", url, "--directory",
            str(directory), "--max-trials", str(max_trials), "--epochs", "2",
            "--search-name", search_name, "--experiment", "tuning"]


def test_search_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    command = _demo_command(url, tmp_path / "tuner", 4, "resume")
    proc = subprocess.Popen(command, env=isolated_env(ROOT), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    completed = 0
    while completed < 2:
        assert proc.poll() is None, "the search ended before it could be killed"
        assert time.monotonic() < deadline, "no two trials completed in time"
        time.sleep(0.2)
        try:
            completed = sum(r["status"] == "completed"
                            for r in open_store(url).trials("tuning", "resume"))
        except Exception:  # noqa: BLE001 - the schema may not exist yet
            completed = 0
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["trial_id"]: r for r in open_store(url).trials("tuning", "resume")
              if r["status"] == "completed"}
    assert 2 <= len(before) < 4

    # Resume in this process (TensorFlow is already imported here): same command-line
    # settings as `medrepro tune-demo` above.
    run_demo_search(url, directory=tmp_path / "tuner", experiment="tuning",
                    search_name="resume", max_trials=4, epochs=2, seed=0)
    rows = open_store(url).trials("tuning", "resume")
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 4
    assert all(r["status"] == "completed" for r in rows)
    oracle = json.loads((tmp_path / "tuner" / "resume" / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == sorted(ids)
    after = {r["trial_id"]: r for r in rows}
    for trial_id, row in before.items():  # completed trials were kept, not re-run
        assert after[trial_id]["ended"] == row["ended"]


@pytest.mark.postgres
def test_chief_and_two_workers_finish_a_four_trial_search(postgres_server, tmp_path):
    url = postgres_server.create_database()
    command = _demo_command(url, tmp_path / "tuner", 4, "distributed")
    env = isolated_env(ROOT)
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        code = cli.main(["tune-local", "--workers", "2", "--log-dir", str(tmp_path / "logs"),
                         "--", *command])
    finally:
        os.environ.clear()
        os.environ.update(old)
    logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log")}
    assert code == 0, logs
    rows = open_store(url).trials("tuning", "distributed")
    assert len(rows) == 4, logs
    assert len({r["trial_id"] for r in rows}) == 4
    assert all(r["status"] == "completed" and r["duration_s"] > 0 for r in rows)
    assert set(logs) == {"chief.log", "tuner0.log", "tuner1.log"}


def test_tune_local_reports_a_failing_command(tmp_path):
    from shared.cli.tracking import launch_local

    code = launch_local([sys.executable, "-c", "import sys; sys.exit(3)"], workers=2,
                        log_dir=tmp_path / "logs", env=isolated_env(ROOT), chief_grace_s=1)
    assert code == 3
    with pytest.raises(ValueError, match="workers"):
        launch_local(["true"], workers=0)
