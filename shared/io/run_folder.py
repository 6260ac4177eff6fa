"""The run-folder rule: a run never reuses or clears a folder without being told.

    out = open_run_folder(out, resume=args.resume, overwrite=args.overwrite)  # CLI
    ...                                  # the run: make_run_dir, protocol, data checks
    run_folder_started(out)              # about to train: the folder is the run's now
    finish_run_folders(ok=True)          # `medrepro`'s main() does this for every command,
                                         # then writes each started run's index.html

* A folder is a run only when it holds `RUN_MARKER` (`.medrepro-run.json`), which
  only `shared.tracking.runs.make_run_dir` writes. Files a user may also keep
  (`config.json`, `report.md`) make no folder a run.
* A missing or empty folder is used (created by the run's first write).
* A run folder is refused unless `resume` (continue it) or `overwrite` (clear it).
  `overwrite` removes only what a run writes (`RUN_OUTPUTS`); a run folder that also
  holds other files is refused, naming them, and left as it was.
* A non-empty folder that holds no run is refused either way, and left as it was.
* Nothing is written before every check of the command has passed: a command that
  fails before `run_folder_started` leaves the folder as it found it (a new folder is
  removed, the outputs an overwrite set aside are put back, the top-level files a
  refused resume rewrote are restored byte for byte).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

RUN_MARKER = ".medrepro-run.json"
# Kept for readers that list what makes a run; only the marker does now.
RUN_MARKERS = (RUN_MARKER,)
# What the papers' runs write at the top of their folder (files and folders).
RUN_OUTPUTS = (
    RUN_MARKER, "config.json", "run_info.json", "protocol.json", "claims.json", "report.md",
    "report.html", "report.json", "results.json", "summary.json", "search.json", "gates.json",
    "models.json", "metrics.json", "skipped.json", "smoke.json", "arm_validity.json",
    "data_manifest.json", "bundle.json", "pilot.json", "arms.jsonl", "results.spool.jsonl*",
    "index.html", "bundles", "tensorboard",
    "*.spool.jsonl", "samples.png", "log.txt", ".medrepro-previous", "*.keras", "*.tmp",
    "*.tmp-*", "figures", "stats", "stats_*", "comparison", "tuner", "data", "covidx",
    "heart_overlap", "marker_overlap", "test_accuracy",
)
_SET_ASIDE = ".medrepro-previous"
# The largest top-level file a pending resume snapshots (configs, protocols, logs).
_SNAPSHOT_BYTES = 8 * 1024 * 1024


def is_run_output(name: str) -> bool:
    """Whether a top-level entry named `name` is one a run writes."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_OUTPUTS)


def is_run_folder(folder) -> bool:
    """Whether `folder` holds a run (its `RUN_MARKER`)."""
    return (Path(folder) / RUN_MARKER).is_file()


def read_run_marker(folder) -> dict:
    """The run marker's fields ({} when unreadable)."""
    try:
        data = json.loads((Path(folder) / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_run_folder(out, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Checks `out` against the run-folder rule without writing anything.

    Raises:
        ValueError: both flags given; `out` is a file; `out` holds a run and neither
            flag is given; `out` holds files that are not a run; `overwrite` of a run
            folder that also holds files no run writes.
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run "
                         "in the folder or clear it, not both")
    if out.exists() and not out.is_dir():
        raise ValueError(f"run folder {out} is a file; expected a folder")
    if not out.exists() or not any(out.iterdir()):
        return out
    if not is_run_folder(out):
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise ValueError(f"run folder {out} holds files ({shown}) but no {RUN_MARKER}, so it "
                         f"is not a medrepro run and is never resumed or cleared; expected a "
                         f"new or empty folder, or an earlier run's folder")
    if resume:
        return out
    if not overwrite:
        raise ValueError(f"run folder {out} holds another run ({RUN_MARKER}); pass --resume "
                         f"to continue it, --overwrite to clear it first, or choose another "
                         f"--out")
    foreign = sorted(p.name for p in out.iterdir() if not is_run_output(p.name))
    if foreign:
        raise ValueError(f"run folder {out} holds a run and files no run writes "
                         f"({', '.join(foreign[:4])}); --overwrite removes only a run's "
                         f"outputs: move them out first or choose another --out")
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def clear_run_outputs(out) -> list:
    """Removes what a run wrote at the top of `out` (`RUN_OUTPUTS`); returns the names."""
    out = Path(out)
    removed = []
    for child in sorted(out.iterdir()):
        if is_run_output(child.name):
            _remove(child)
            removed.append(child.name)
    return removed


def prepare_run_folder(out, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Checks `out` and, with `overwrite`, clears a run's outputs from it at once.

    For library callers that own the folder (the demo); commands use
    `open_run_folder`, which writes nothing until the run starts.
    """
    out = check_run_folder(out, resume=resume, overwrite=overwrite)
    if overwrite and out.is_dir() and is_run_folder(out):
        clear_run_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


class _Pending:
    """What `open_run_folder` found, so a failed command can put it back."""

    def __init__(self, out: Path, *, resume: bool, overwrite: bool):
        self.out = out
        self.existed = out.exists()
        self.names = set(p.name for p in out.iterdir()) if self.existed else set()
        self.snapshot = {}
        if resume and self.existed:
            for child in out.iterdir():
                if child.is_file() and not child.is_symlink() \
                        and child.stat().st_size <= _SNAPSHOT_BYTES:
                    self.snapshot[child.name] = child.read_bytes()
        self.aside = None
        if overwrite and self.existed and is_run_folder(out):
            # Set aside, not deleted: the new run may still be refused.
            self.aside = out / _SET_ASIDE
            _remove(self.aside)
            self.aside.mkdir()
            for name in sorted(self.names):
                if name != _SET_ASIDE:
                    (out / name).rename(self.aside / name)
            self.names = set()

    def commit(self) -> None:
        if self.aside is not None:
            _remove(self.aside)
            self.aside = None

    def roll_back(self) -> None:
        out = self.out
        if not out.exists():
            return
        if not self.existed:
            shutil.rmtree(out, ignore_errors=True)
            return
        for child in list(out.iterdir()):
            if child.name not in self.names and child.name != _SET_ASIDE:
                _remove(child)
        for name, data in self.snapshot.items():
            path = out / name
            if not path.is_file() or path.read_bytes() != data:
                path.write_bytes(data)
        if self.aside is not None:
            for child in list(self.aside.iterdir()):
                child.rename(out / child.name)
            self.aside.rmdir()
            self.aside = None


_PENDING: dict = {}
# The folders opened by `open_run_folder` in which a run started, until they are finished.
_STARTED: list = []


def open_run_folder(out, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Checks `out` (`check_run_folder`) and holds it pending until the run starts.

    Nothing is created: the run's first write (`make_run_dir`) creates the folder. An
    overwritten run's outputs are set aside and removed only when the new run starts.
    """
    out = check_run_folder(out, resume=resume, overwrite=overwrite)
    key = out.resolve()
    previous = _PENDING.pop(key, None)
    if previous is not None:
        previous.commit()
    _PENDING[key] = _Pending(out, resume=resume, overwrite=overwrite)
    return out


def run_folder_started(out) -> None:
    """Every check passed and training begins: `out` is this run's from now on."""
    pending = _PENDING.pop(Path(out).resolve(), None)
    if pending is not None:
        pending.commit()
        _STARTED.append(pending.out)


def finish_run_folders(*, ok: bool) -> list:
    """Ends every pending folder: kept when the command succeeded, put back otherwise.

    Returns:
        The folders opened by `open_run_folder` in which a run started since the last
        call (so `medrepro` can write their `index.html`), forgotten from now on.
    """
    started = list(dict.fromkeys(_STARTED))
    _STARTED.clear()
    while _PENDING:
        _, pending = _PENDING.popitem()
        try:
            pending.commit() if ok else pending.roll_back()
        except OSError as err:  # the command's own error is the one to report
            log.warning("could not restore run folder %s: %s", pending.out, err)
    return started
