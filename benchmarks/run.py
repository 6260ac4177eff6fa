"""Runs every `benchmarks/bench_*.py` module and prints one table of ratios.

    python -m benchmarks.run                 # all benchmarks
    python -m benchmarks.run --only attribution
    python -m benchmarks.run --json out.json # where to write the results (default below)
    python -m benchmarks.run --strict        # exit status 1 when a target is missed or a row failed
    python -m benchmarks.run --short         # every module in seconds (a smoke run)

Each module exposes `run(short=False) -> list[dict]`, one dict per figure with keys
`name` (str), `value` (a finite number), `unit` (str), `target` (a string such as
"<= 1.15" or ">= 10", or None for a figure without a target) and optionally `detail`
(str). Ratios are measured side by side inside one run of the module, so machine load
affects both sides alike. The table and a JSON file with the machine description go to
stdout and `benchmarks/results.json`. With `--only`, the rows of the modules that were
not run are kept in that file (each row carries the time it was measured), so one module
can be re-measured on its own. Each module runs in its own interpreter, so no TensorFlow
state or memory carries over from one benchmark to the next.

A row that breaks that contract, or a module that raises, exits with an error or runs
past the timeout, becomes a failed row (result "error") whose `error` names the module
and the reason in one line; the other modules still run and the results are still
written. `--short` calls `run(short=True)`: smaller sizes and fewer repetitions, figures
that only show the module works; its results are written only where `--json` says.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import json
import math
import numbers
import operator
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_TARGET = re.compile(r"\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
REQUIRED_KEYS = ("name", "value", "unit", "target")
OPTIONAL_KEYS = ("detail",)
DEFAULT_TIMEOUT = 900


class ModuleFailed(RuntimeError):
    """A module's subprocess failed; the message is the one-line reason."""


def discover(only=None, modules=None):
    """Module names `benchmarks.bench_*` (or `modules`), filtered by `only` (substring)."""
    if modules:
        names = list(modules)
    else:
        names = [f"benchmarks.{p.stem}" for p in sorted(HERE.glob("bench_*.py"))]
    if only:
        names = [n for n in names if only in n.rsplit(".", 1)[-1]]
    return names


def check_target(value, target):
    """True / False for a target like "<= 1.15"; None when there is no target."""
    if target is None:
        return None
    match = _TARGET.fullmatch(target) if isinstance(target, str) else None
    if not match:
        raise ValueError(f"target must be None or a string like '<= 1.15' or '>= 10'. "
                         f"Received: {target!r}")
    return bool(_OPS[match.group(1)](float(value), float(match.group(2))))


def row_problem(row):
    """Why `row` breaks the row contract (one line), or None when it keeps it."""
    if not isinstance(row, dict):
        return f"a row must be a dict. Received: {type(row).__name__}"
    missing = [k for k in REQUIRED_KEYS if k not in row]
    if missing:
        return f"missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
    extra = sorted(set(row) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS), key=str)
    if extra:
        return (f"unexpected key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                f"(allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})")
    for key in ("name", "unit") + tuple(k for k in OPTIONAL_KEYS if k in row):
        if not isinstance(row[key], str):
            return f"{key} must be a str. Received: {row[key]!r}"
    value = row["value"]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"value must be a finite number. Received: {value!r}"
    if not math.isfinite(float(value)):
        return f"value must be a finite number. Received: {value!r}"
    try:
        check_target(value, row["target"])
    except ValueError as err:
        return str(err)
    return None


def failed_row(module_name, reason, name=None):
    """The row that stands for a module or row that could not be measured."""
    reason = " ".join(str(reason).split()) or "no reason given"
    return {"module": module_name, "name": name or module_name.rsplit(".", 1)[-1],
            "value": None, "unit": "", "target": None, "passed": False,
            "error": f"{module_name}: {reason}"}


def _exception_line(exc):
    """`Type: message` of an exception, on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def machine_info():
    """CPU model, core count, platform and library versions."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import keras
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["keras"] = keras.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError:
        pass
    return info


def _run_module(module_name, short=False):
    """Imports a benchmark module and returns its rows (in this process)."""
    run = importlib.import_module(module_name).run
    if not short:
        return run()
    try:
        accepts_short = "short" in inspect.signature(run).parameters
    except (TypeError, ValueError):
        accepts_short = True
    if not accepts_short:
        raise TypeError("run() takes no 'short' argument, so the module has no short mode")
    return run(short=True)


def _child(module_name, out, short):
    """The child interpreter's side: rows, or the one-line reason, to `out`."""
    try:
        payload = {"rows": _run_module(module_name, short)}
        text = json.dumps(payload, default=float)
    except Exception as exc:
        traceback.print_exc()
        text = json.dumps({"error": _exception_line(exc)})
    Path(out).write_text(text)
    return 0


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run_module_subprocess(module_name, timeout, short=False):
    """Runs one module in a fresh interpreter: no TensorFlow state, caches or memory
    carried over from another benchmark (the tuner memory benchmark reads RSS)."""
    command = [sys.executable, "-m", "benchmarks.run", "--child", module_name]
    if short:
        command.append("--short")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        try:
            proc = subprocess.run(command + ["--child-out", str(out)], cwd=HERE.parent,
                                  capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ModuleFailed(f"timed out after {timeout:g} s") from None
        payload = None
        if out.exists():
            try:
                payload = json.loads(out.read_text())
            except ValueError:
                payload = None
        if isinstance(payload, dict) and "error" in payload:
            raise ModuleFailed(payload["error"])
        if proc.returncode != 0 or not isinstance(payload, dict) or "rows" not in payload:
            last = _last_line(proc.stderr) or _last_line(proc.stdout)
            raise ModuleFailed(f"subprocess exit status {proc.returncode}"
                               + (f": {last}" if last else ", no output"))
        return payload["rows"]


def run_all(modules, *, in_process=False, timeout=DEFAULT_TIMEOUT, short=False):
    """Runs each module (by default each in its own interpreter), validates its rows and
    checks their targets. A module that fails, or a row that breaks the contract,
    becomes a failed row (see `failed_row`); the other modules still run."""
    rows = []
    for module_name in modules:
        t0 = time.perf_counter()
        try:
            if in_process:
                results = _run_module(module_name, short)
            else:
                results = _run_module_subprocess(module_name, timeout, short)
        except Exception as exc:  # a failing benchmark must not hide the others
            if in_process:
                traceback.print_exc()
            reason = str(exc) if isinstance(exc, ModuleFailed) else _exception_line(exc)
            rows.append(failed_row(module_name, reason))
            rows[-1]["module_seconds"] = round(time.perf_counter() - t0, 1)
            continue
        elapsed = round(time.perf_counter() - t0, 1)
        if not isinstance(results, list) or not results:
            reason = ("run() returned no rows" if isinstance(results, list) else
                      f"run() must return a list of dicts. Received: {type(results).__name__}")
            rows.append(failed_row(module_name, reason))
            rows[-1]["module_seconds"] = elapsed
            continue
        for i, row in enumerate(results):
            problem = row_problem(row)
            if problem:
                name = row.get("name") if isinstance(row, dict) else None
                name = name if isinstance(name, str) else None
                label = f"row {i}" + (f" ({name!r})" if name else "")
                rows.append(failed_row(module_name, f"{label}: {problem}", name))
                rows[-1]["module_seconds"] = elapsed
                continue
            row = dict(row)
            row["value"] = float(row["value"])
            row["module"] = module_name
            row["passed"] = check_target(row["value"], row["target"])
            row["module_seconds"] = elapsed
            rows.append(row)
    return rows


def format_table(rows):
    header = ("benchmark", "value", "unit", "target", "result")
    lines = []
    for r in rows:
        result = "error" if r.get("error") else {True: "pass", False: "FAIL", None: "-"}[r["passed"]]
        value = "-" if r.get("value") is None else f"{r['value']:.3g}"
        lines.append((r["name"], value, r.get("unit", ""), r.get("target") or "-", result))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    for r in rows:
        if r.get("detail"):
            out.append(f"  {r['name']}: {r['detail']}")
        if r.get("error"):
            out.append(f"  {r['name']}: error: {r['error']}")
    return "\n".join(out)


def kept_rows(path: Path, modules_run: set) -> list:
    """Rows of an earlier results file whose module was not run this time.

    Rows written before rows carried their own time get the file's `created` time.
    An unreadable or missing file keeps nothing.
    """
    try:
        earlier = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    kept = []
    for row in earlier.get("results", []):
        if row.get("module") in modules_run:
            continue
        row.setdefault("measured", earlier.get("created"))
        kept.append(row)
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run only modules whose name contains this text")
    parser.add_argument("--module", action="append", metavar="DOTTED.NAME",
                        help="run this module instead of benchmarks/bench_*.py (repeatable)")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default: benchmarks/results.json; with --short, "
                             "none is written unless this is given)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed or a row failed "
                             "(with --short: only when a row failed)")
    parser.add_argument("--short", action="store_true",
                        help="call run(short=True): smaller sizes and fewer repetitions, "
                             "seconds per module")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds a module may run (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--in-process", action="store_true",
                        help="run all modules in this interpreter (for debugging)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.child:
        return _child(args.child, args.child_out, args.short)
    modules = discover(args.only, args.module)
    if not modules:
        print(f"No benchmark module matches {args.only!r}.", file=sys.stderr)
        return 2
    rows = run_all(modules, in_process=args.in_process, timeout=args.timeout, short=args.short)
    print(format_table(rows))
    if args.short:
        print("\nshort mode: smaller sizes and fewer repetitions; the figures only show that "
              "each module works and are not comparable with the targets.")
    json_path = args.json
    if json_path is None and not args.short:
        json_path = HERE / "results.json"
    if json_path is not None:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for row in rows:
            row["measured"] = now
            if args.short:
                row["short"] = True
        partial = bool(args.only or args.module)
        kept = kept_rows(json_path, {r["module"] for r in rows}) if partial else []
        payload = {"created": now, "short": args.short, "machine": machine_info(),
                   "results": kept + rows}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"\nwrote {json_path}")
    errors = any(r.get("error") for r in rows)
    missed = any(r["passed"] is False and not r.get("error") for r in rows)
    return 1 if args.strict and (errors or (missed and not args.short)) else 0


if __name__ == "__main__":
    sys.exit(main())
