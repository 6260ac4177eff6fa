"""Self-describing run folders: resolved config, versions, git revision, metrics."""

import dataclasses
import datetime as _dt
import json
import math
import platform
import socket
import subprocess
from pathlib import Path

from shared import __version__


def git_revision(path=None) -> str:
    """The full git revision of the source tree (with `+dirty` when a tracked file is
    modified), or '' outside a git checkout."""
    root = Path(path) if path is not None else Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + ("+dirty" if dirty else "")


def to_jsonable(value):
    """Converts dataclasses, paths, NumPy scalars and arrays into JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def finite_or_none(value):
    """NaN / inf become None, recursively, so that the JSON is strict (and PostgreSQL-readable)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def environment_info() -> dict:
    """Package version, git revision, host and library versions for a run record."""
    info = {
        "medrepro_version": __version__,
        "git_revision": git_revision(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import keras
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["keras"] = keras.__version__
    except ImportError:  # pragma: no cover - both are install requirements
        pass
    return info


def make_run_dir(out_dir, config=None) -> Path:
    """Creates `out_dir` and writes its run marker, `config.json` and `run_info.json`.

    The marker (`shared.io.run_folder.RUN_MARKER`) is what makes the folder a run:
    only a folder holding it is resumed or cleared by `--resume` / `--overwrite`.
    A resumed run keeps its marker.

    Args:
        out_dir: str or Path. The run's own folder.
        config: dataclass or dict, optional. The resolved configuration.

    Returns:
        The folder as a Path.
    """
    from shared.io.run_folder import RUN_MARKER

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RUN_MARKER).is_file():
        info = environment_info()
        write_json(out / RUN_MARKER, {"medrepro_run": 1, "created": info["created"],
                                      "medrepro_version": info["medrepro_version"]})
    if config is not None:
        write_json(out / "config.json", config)
    write_json(out / "run_info.json", environment_info())
    return out


def write_json(path, value) -> Path:
    """Writes `value` as indented JSON (via `to_jsonable`), atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(value), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
