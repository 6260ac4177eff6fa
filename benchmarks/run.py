"""Runs every `benchmarks/bench_*.py` module and prints one table of ratios.

    python -m benchmarks.run                 # all benchmarks
    python -m benchmarks.run --only attribution
    python -m benchmarks.run --json out.json # where to write the results (default below)
    python -m benchmarks.run --strict        # exit status 1 when a target is missed

Each module exposes `run() -> list[dict]`, one dict per figure with keys `name`, `value`
(float), `unit` (str), `target` (a string such as "<= 1.15" or ">= 10", or None for a
figure without a target) and optionally `detail` (str). Ratios are measured side by side
inside one run of the module, so machine load affects both sides alike. The table and a
JSON file with the machine description go to stdout and `benchmarks/results.json`.
With `--only`, the rows of the modules that were not run are kept in that file (each row
carries the time it was measured), so one module can be re-measured on its own.
Each module runs in its own interpreter, so no TensorFlow state or memory carries over
from one benchmark to the next.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
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


def discover(only=None):
    """Module names `benchmarks.bench_*`, filtered by `only` (substring of the name)."""
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if only:
        names = [n for n in names if only in n]
    return [f"benchmarks.{n}" for n in names]


def check_target(value, target):
    """True / False for a target like "<= 1.15"; None when there is no target."""
    if target is None:
        return None
    match = re.fullmatch(r"\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", str(target))
    if not match:
        raise ValueError(f"target must look like '<= 1.15' or '>= 10'. Received: {target!r}")
    return bool(_OPS[match.group(1)](float(value), float(match.group(2))))


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


def _run_module(module_name):
    """Imports a benchmark module and returns its rows (in this process)."""
    return importlib.import_module(module_name).run()


def _run_module_subprocess(module_name, timeout):
    """Runs one module in a fresh interpreter: no TensorFlow state, caches or memory
    carried over from another benchmark (the tuner memory benchmark reads RSS)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--child", module_name, "--child-out", str(out)],
            cwd=HERE.parent, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout)[-2000:]
            raise RuntimeError(f"exit status {proc.returncode}\n{tail}")
        return json.loads(out.read_text())


def run_all(modules, *, in_process=False, timeout=900):
    """Runs each module (by default each in its own interpreter) and checks targets."""
    rows = []
    for module_name in modules:
        t0 = time.perf_counter()
        try:
            if in_process:
                results = _run_module(module_name)
            else:
                results = _run_module_subprocess(module_name, timeout)
        except Exception as exc:  # a failing benchmark must not hide the others
            if in_process:
                traceback.print_exc()
            rows.append({"module": module_name, "name": module_name.split(".")[-1],
                         "value": float("nan"), "unit": "", "target": None,
                         "passed": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        elapsed = time.perf_counter() - t0
        for row in results:
            row = dict(row)
            row["module"] = module_name
            row["passed"] = check_target(row["value"], row.get("target"))
            row["module_seconds"] = round(elapsed, 1)
            rows.append(row)
    return rows


def format_table(rows):
    header = ("benchmark", "value", "unit", "target", "result")
    lines = []
    for r in rows:
        result = "error" if r.get("error") else {True: "pass", False: "FAIL", None: "-"}[r["passed"]]
        lines.append((r["name"], f"{r['value']:.3g}", r.get("unit", ""),
                      r.get("target") or "-", result))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    for r in rows:
        if r.get("detail"):
            out.append(f"  {r['name']}: {r['detail']}")
        if r.get("error"):
            out.append(f"  {r['name']}: {r['error']}")
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
    parser.add_argument("--json", type=Path, default=HERE / "results.json",
                        help="results file (default: benchmarks/results.json)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed or a module fails")
    parser.add_argument("--in-process", action="store_true",
                        help="run all modules in this interpreter (for debugging)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.child:
        rows = _run_module(args.child)
        args.child_out.write_text(json.dumps(rows, default=float))
        return 0
    modules = discover(args.only)
    if not modules:
        print(f"No benchmark module matches {args.only!r}.", file=sys.stderr)
        return 2
    rows = run_all(modules, in_process=args.in_process)
    print(format_table(rows))
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for row in rows:
        row["measured"] = now
    kept = kept_rows(args.json, {r["module"] for r in rows}) if args.only else []
    payload = {"created": now, "machine": machine_info(), "results": kept + rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")
    failed = any(r["passed"] is False for r in rows)
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
