"""The run-folder rule: a run never reuses another run's folder without being told.

    prepare_run_folder(out, resume=args.resume, overwrite=args.overwrite)

* a missing or empty folder is created and used;
* a folder holding a run (any of `RUN_MARKERS`) is refused unless `resume` (continue
  it: the run keeps what is there and picks up what it can) or `overwrite` (its
  contents are removed first);
* a non-empty folder that holds no run is refused either way: it may be a user's
  data, and a run never clears what it did not write.
"""

from __future__ import annotations

import shutil
from pathlib import Path

RUN_MARKERS = ("protocol.json", "claims.json", "config.json", "report.md", "run.json")


def _markers(folder: Path) -> list:
    return [name for name in RUN_MARKERS if (folder / name).exists()]


def prepare_run_folder(out, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Checks and readies the run folder `out`; returns it as a Path.

    Raises:
        ValueError: both flags given; `out` is a file; `out` holds another run and
            neither flag is given; `out` holds files that are not a run.
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run "
                         "in the folder or clear it, not both")
    if out.exists() and not out.is_dir():
        raise ValueError(f"run folder {out} is a file; expected a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return out
    markers = _markers(out)
    if not markers:
        raise ValueError(f"run folder {out} holds files that are not a medrepro run (none of "
                         f"{', '.join(RUN_MARKERS)}); expected a new or empty folder, or "
                         f"an earlier run's folder")
    if resume:
        return out
    if not overwrite:
        raise ValueError(f"run folder {out} holds another run ({', '.join(markers)}); pass "
                         f"--resume to continue it, --overwrite to clear it first, or choose "
                         f"another --out")
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return out
