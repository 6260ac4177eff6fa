"""Tracking commands: `report`, `store info|sync|trials`, `tune-demo` and `tune-local`.

* `medrepro report --store URL --experiment NAME --metric M [--by FIELD]
  [--pair-by FIELD] [--where EXPR] [--split S] [--out DIR] [--json]`: statistical
  comparison report (Markdown, HTML, JSON, figures) of one metric between groups of
  models; with `--pair-by` the groups' values are matched unit by unit (trial index,
  seed, fold) and compared with paired tests.
* `medrepro store info [--store URL]`: schema version, experiments and row counts.
* `medrepro store sync --spool PATH [PATH ...] --store URL [--remove]`: pushes trial
  records kept locally while the store was unreachable.
* `medrepro store trials --experiment NAME [--search NAME]`: trials as a table / JSON.
* `medrepro tune-demo ...`: the built-in tiny search (Dense model, synthetic data).
* `medrepro tune-local --workers N [--port P] [-- COMMAND ...]`: a distributed Keras
  Tuner search on one machine: one chief (the oracle) and N workers, each running
  COMMAND (default: `medrepro tune-demo`) with the KERASTUNER_* variables set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from shared.cli.options import SEED, add_store_arg, count, number, resolve_store_url


def register(subparsers) -> None:
    """Adds `report`, `store`, `tune-demo` and `tune-local` to the `medrepro` command."""
    report = subparsers.add_parser(
        "report", help="statistical comparison report of a metric between groups of models",
        description="Compares one metric of an experiment's evaluations between groups "
                    "(Shapiro-Wilk, Mann-Whitney U or t-test, Kruskal-Wallis / ANOVA with Holm, "
                    "Cohen's d, CLES, power) and writes report.md, report.html, report.json "
                    "and figures. With --pair-by the groups are paired arms: values are "
                    "matched by that field (Wilcoxon signed-rank and paired t-test, CI of the "
                    "mean difference, Friedman and Holm for three or more arms).")
    add_store_arg(report)
    report.add_argument("--experiment", required=True, help="experiment name in the store")
    report.add_argument("--metric", required=True, help="metric to compare, e.g. accuracy")
    report.add_argument("--by", default="group",
                        help="field defining the groups: group, split, model_id or a key of "
                             "the evaluation's extra JSON (default: group)")
    report.add_argument("--pair-by", default=None, metavar="FIELD",
                        help="match the groups' values by this field (a key of the extra "
                             "JSON such as trial_index, seed or fold, or several separated by "
                             "commas, e.g. run,trial_index) and run paired tests; units that "
                             "only some groups have are dropped and counted")
    report.add_argument("--where", default=None, metavar="EXPR",
                        help="filter, e.g. \"val_accuracy > 0.95 and split == 'test'\": names "
                             "are row fields, extra keys or other metrics of the same model; "
                             "operators == != < <= > >=, and / or / not, parentheses")
    report.add_argument("--split", default=None, help="only evaluations of this split")
    report.add_argument("--alpha", type=number(low=0, high=1, low_open=True, high_open=True),
                        default=0.05, help="significance level (0.05)")
    report.add_argument("--student", action="store_true",
                        help="Student's t-test (equal variances) instead of Welch's")
    report.add_argument("--out", type=Path, default=None,
                        help="report folder (default: runs/reports/<experiment>_<metric>)")
    report.add_argument("--json", action="store_true",
                        help="print the report's numbers as JSON on stdout")
    report.set_defaults(func=_cmd_report)

    store = subparsers.add_parser("store", help="inspect the results store, push spooled records")
    store_sub = store.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    info = store_sub.add_parser("info", help="schema version, experiments and row counts")
    add_store_arg(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_store_info)
    sync = store_sub.add_parser(
        "sync", help="push trial records spooled while the store was unreachable")
    add_store_arg(sync)
    sync.add_argument("--spool", type=Path, nargs="+", required=True, metavar="PATH",
                      help="spool file(s) (<tuner directory>/<search>.<tuner id>.spool.jsonl)")
    sync.add_argument("--remove", action="store_true",
                      help="delete each spool file once all of its records are in the store "
                           "(records appended meanwhile go to a new spool file)")
    sync.set_defaults(func=_cmd_store_sync)
    trials = store_sub.add_parser("trials", help="list the trials of an experiment")
    add_store_arg(trials)
    trials.add_argument("--experiment", default=None)
    trials.add_argument("--search", default=None, help="search name")
    trials.add_argument("--json", action="store_true", help="print JSON")
    trials.set_defaults(func=_cmd_store_trials)
    store.set_defaults(func=lambda args: (store.print_help(), 0)[1])

    demo = subparsers.add_parser(
        "tune-demo", help="a tiny built-in Keras Tuner search (Dense model, synthetic data)")
    add_store_arg(demo)
    demo.add_argument("--directory", type=Path, default=Path("runs/tuning"),
                      help="tuner folder (default: runs/tuning)")
    demo.add_argument("--experiment", default="tuning_demo")
    demo.add_argument("--search-name", default="demo")
    demo.add_argument("--group", default=None)
    demo.add_argument("--kind", choices=["random", "bayesian", "hyperband", "grid"],
                      default="random")
    demo.add_argument("--max-trials", type=count(1), default=4)
    demo.add_argument("--epochs", type=count(1), default=2)
    demo.add_argument("--samples", type=count(2), default=64)
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument("--overwrite", action="store_true",
                      help="start afresh instead of resuming (chief / single process only)")
    demo.set_defaults(func=_cmd_tune_demo)

    local = subparsers.add_parser(
        "tune-local", help="distributed search on one machine: a chief and N workers",
        description="Starts a Keras Tuner chief (the oracle) and N workers on this machine, "
                    "each running COMMAND with KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / "
                    "KERASTUNER_ORACLE_PORT set. COMMAND is any search that builds its tuner "
                    "with shared.tuning.make_tuner (e.g. a paper's `search` command); by "
                    "default `medrepro tune-demo`. Example: medrepro tune-local --workers 2 -- "
                    "medrepro tune-demo --store sqlite:///runs/results.sqlite --max-trials 8")
    local.add_argument("--workers", type=count(1, 256), required=True, help="number of workers")
    local.add_argument("--ip", default="127.0.0.1", help="address the chief listens on")
    local.add_argument("--port", type=count(1, 65535), default=None, help="oracle port (default: a free one)")
    local.add_argument("--startup-timeout",
                       type=number(low=0, high=86400, low_open=True), default=180.0,
                       help="seconds to wait for the chief's oracle to listen (default: 180)")
    local.add_argument("--log-dir", type=Path, default=None,
                       help="write each process's output to <log-dir>/<tuner id>.log")
    local.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                       help="the search command (after --)")
    local.set_defaults(func=_cmd_tune_local)


# ---------------------------------------------------------------------- report
def _cmd_report(args) -> int:
    from shared.report import report_from_store
    from shared.tracking.store import open_store

    if args.pair_by is not None and args.student:
        raise ValueError("--student: expected only without --pair-by (it chooses the t-test "
                         "of independent groups; paired arms get the paired t-test)")
    store = open_store(resolve_store_url(args.store))
    out = args.out
    if out is None:
        out = Path("runs") / "reports" / f"{args.experiment}_{args.metric}"
    path = report_from_store(store, args.experiment, args.metric, by=args.by, where=args.where,
                             out_dir=out, split=args.split, alpha=args.alpha,
                             equal_var=args.student, pair_by=args.pair_by)
    if args.json:
        print((path.parent / "report.json").read_text(), end="")
    else:
        print(f"report: {path}")
        print(f"html:   {path.parent / 'report.html'}")
    return 0


# ---------------------------------------------------------------------- store
def _cmd_store_info(args) -> int:
    from shared.tracking.store import open_store

    store = open_store(resolve_store_url(args.store))
    info = {"store": store.masked_url, "schema_version": store.schema_version(),
            "experiments": store.experiments()}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store           {info['store']}")
    print(f"schema version  {info['schema_version']}")
    if not info["experiments"]:
        print("no experiments yet")
    for e in info["experiments"]:
        print(f"  {e['name']:30s} searches {e['searches']:4d}  trials {e['trials']:6d}  "
              f"evaluations {e['evaluations']:6d}")
    return 0


def _cmd_store_sync(args) -> int:
    from shared.tracking.spool import sync_spool
    from shared.tracking.store import open_store

    store = open_store(resolve_store_url(args.store))
    total = 0
    for path in args.spool:
        count = sync_spool(store, path, remove=args.remove)
        total += count
        print(f"{path}: {count} record(s) pushed to {store.masked_url}"
              + (" (file removed)" if args.remove else ""))
    print(f"{total} record(s) in all")
    return 0


def _cmd_store_trials(args) -> int:
    from shared.tracking.store import open_store

    store = open_store(resolve_store_url(args.store))
    if args.experiment is not None:
        names = [e["name"] for e in store.experiments()]
        if args.experiment not in names:
            raise ValueError(f"results store {store.masked_url}: --experiment "
                             f"{args.experiment!r} not found; expected one of "
                             f"{', '.join(names[:10]) or '(none: the store is empty)'}")
    if args.search is not None:
        searches = [s["search_name"] for s in store.searches(args.experiment)]
        if args.search not in searches:
            raise ValueError(f"results store {store.masked_url}: --search {args.search!r} "
                             f"not found; expected one of "
                             f"{', '.join(searches[:10]) or '(none)'}")
    rows = store.trials(args.experiment, args.search)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        duration = "-" if r["duration_s"] is None else f"{r['duration_s']:.1f}s"
        score = (r["metrics"] or {}).get("tuner_score")
        print(f"{r['experiment']}/{r['search_name']} trial {r['trial_id']:>5} {r['status']:9s} "
              f"{duration:>8} score {score if score is not None else '-'}  {r['host'] or ''}")
    print(f"{len(rows)} trial(s)")
    return 0


# ---------------------------------------------------------------------- tuning
def _cmd_tune_demo(args) -> int:
    from shared.tracking.tuning import is_chief, run_demo_search

    tuner = run_demo_search(resolve_store_url(args.store), directory=args.directory,
                            experiment=args.experiment, search_name=args.search_name,
                            kind=args.kind, max_trials=args.max_trials, epochs=args.epochs,
                            seed=args.seed, group=args.group, n=args.samples,
                            overwrite=args.overwrite)
    if not is_chief() and "KERASTUNER_ORACLE_IP" in os.environ:
        return 0
    best = tuner.oracle.get_best_trials(1)
    if best:
        print(f"best trial {best[0].trial_id}: score {best[0].score} "
              f"hyperparameters {best[0].hyperparameters.values}")
    return 0


def free_port(ip="127.0.0.1") -> int:
    """A TCP port free on `ip` at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def _port_open(ip, port) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((ip, port)) == 0


def launch_local(command, *, workers, ip="127.0.0.1", port=None, startup_timeout=180.0,
                 log_dir=None, chief_grace_s=10.0, env=None) -> int:
    """Runs `command` as a Keras Tuner chief plus `workers` workers on this machine.

    Args:
        command: list of str. The search command every process runs.
        workers: int. Number of workers (tuner0 .. tuner{N-1}).
        ip: str. Address the chief's oracle listens on.
        port: int, optional. Oracle port; a free one when None.
        startup_timeout: float. Seconds to wait for the oracle to listen.
        log_dir: Path, optional. Each process writes <log_dir>/<tuner id>.log.
        chief_grace_s: float. Seconds the chief may take to exit after the last
            worker finished (Keras Tuner's chief polls every 20 s).
        env: dict, optional. Base environment (default: os.environ).

    Returns:
        0 when the chief and every worker exited with 0, else the first non-zero code.
    """
    if workers < 1:
        raise ValueError(f"--workers: expected at least 1, got {workers}")
    if not (isinstance(startup_timeout, (int, float)) and math.isfinite(startup_timeout)
            and startup_timeout > 0):
        raise ValueError(f"--startup-timeout: expected a finite number of seconds > 0, got "
                         f"{startup_timeout!r}")
    if not command:
        raise ValueError("tune-local: no command given (expected `-- COMMAND ...`)")
    port = free_port(ip) if port is None else int(port)
    base_env = dict(os.environ if env is None else env)
    base_env.update({"KERASTUNER_ORACLE_IP": ip, "KERASTUNER_ORACLE_PORT": str(port)})
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)

    def start(tuner_id):
        proc_env = dict(base_env, KERASTUNER_TUNER_ID=tuner_id)
        out = None
        if log_dir is not None:
            out = open(Path(log_dir) / f"{tuner_id}.log", "w")  # noqa: SIM115
        return subprocess.Popen(command, env=proc_env, stdout=out,
                                stderr=subprocess.STDOUT if out else None)

    # The workers start at once: their first oracle request waits (gRPC wait_for_ready)
    # until the chief listens, so their TensorFlow start-up overlaps the chief's.
    chief = start("chief")
    procs = [start(f"tuner{i}") for i in range(workers)]
    try:
        deadline = time.monotonic() + startup_timeout
        listening = False
        chief_gone = None
        while any(p.poll() is None for p in procs):
            if chief.poll() is not None and chief.returncode != 0:
                # Without the oracle the workers cannot go on: stop them (finally below).
                print(f"tune-local: the chief exited with code {chief.returncode}"
                      + (f" (see {Path(log_dir) / 'chief.log'})" if log_dir else "")
                      + "; stopping the workers", file=sys.stderr)
                return chief.returncode
            if chief.poll() is not None:
                # A chief that ends while workers still run: they may wait for it forever.
                chief_gone = chief_gone or time.monotonic()
                if time.monotonic() - chief_gone > chief_grace_s + 60:
                    raise RuntimeError("tune-local: the chief ended but workers are still "
                                       "running; is COMMAND a search built with make_tuner?")
            if not listening:
                listening = _port_open(ip, port)
                if not listening and time.monotonic() > deadline:
                    raise RuntimeError(f"tune-local: the chief's oracle did not listen on "
                                       f"{ip}:{port} within {startup_timeout:g} s")
            time.sleep(0.5)
        codes = [p.returncode for p in procs]
        try:
            chief_code = chief.wait(timeout=chief_grace_s)
        except subprocess.TimeoutExpired:
            chief.terminate()
            chief_code = chief.wait(timeout=30)
            if all(c == 0 for c in codes):
                chief_code = 0  # every trial ended; the chief only waited for its next poll
    finally:
        for proc in [chief, *procs]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    for code in [*codes, chief_code]:
        if code != 0:
            return code
    return 0


def _cmd_tune_local(args) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        command = [sys.executable, "-m", "shared", "tune-demo"]
    code = launch_local(command, workers=args.workers, ip=args.ip, port=args.port,
                        startup_timeout=args.startup_timeout, log_dir=args.log_dir)
    if code != 0:
        where = (f"; their output is in {args.log_dir}/<tuner id>.log" if args.log_dir
                 else "; their errors are printed above")
        raise RuntimeError(f"tune-local: the search command ({' '.join(command)[:120]}) of "
                           f"the chief or a worker exited with code {code}{where}")
    print(f"tune-local: chief and {args.workers} worker(s) finished with code {code}")
    return code
