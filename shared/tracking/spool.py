"""The spool: records that could not reach the results store, kept for later.

Trial and evaluation records that cannot be written (the server went away
mid-search) are appended to a local JSON-lines file (`append_spool`) and pushed
later with `sync_spool` (`medrepro store sync --spool PATH --store URL`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

from shared.tracking.runs import finite_or_none, to_jsonable
from shared.tracking.store import ResultsStore

logger = logging.getLogger(__name__)

SPOOL_OPS = ("trial", "evaluation", "checkpoint_removed")
_REQUIRED = {
    "trial": ("experiment", "search_name", "trial_id", "hyperparameters", "metrics"),
    "evaluation": ("experiment", "model_id", "metric", "value"),
    "checkpoint_removed": ("experiment", "search_name", "trial_id"),
}


def append_spool(path, record: dict) -> None:
    """Appends one record (a JSON line) to a spool file, flushed and fsync'ed.

    A record has `op` ("trial" or "evaluation") and the fields of
    `ResultsStore.record_trial` / `record_evaluation`, with the search named by
    `experiment` + `search_name` (+ `search_group`, `search_config`) instead of an id,
    so that it can be replayed into any store. The op "checkpoint_removed"
    (`experiment`, `search_name`, `trial_id`) says a trial's model files were
    deleted after its record was written: replaying it clears the row's model_path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(finite_or_none(to_jsonable(record)), sort_keys=True) + "\n"
    while True:
        with open(path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            # `sync_spool(remove=True)` may have claimed the file between our open and
            # the lock: then this handle points at the claimed file; write to a new one.
            if _same_file(handle, path):
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
                return


def _same_file(handle, path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _claim(path: Path) -> Path:
    """Renames a spool file to a name of its own under its lock; appenders start anew."""
    claimed = path.with_name(f"{path.name}.syncing-{os.getpid()}")
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.replace(path, claimed)
    return claimed


def read_spool(path) -> list[dict]:
    """The records of a spool file, in order; a torn last line (crash) is skipped.

    A torn line is only the last line when it lacks its newline (`append_spool` writes
    each record with its newline in one call): a complete but invalid line, last or
    not, is refused, naming its line, so `sync --remove` never deletes it.
    """
    return [record for _, record in _numbered_records(Path(path))]


def _numbered_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) of every record, each checked for its op's fields."""
    if not path.exists():
        raise FileNotFoundError(f"spool file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"spool file {path}: is a folder; expected a JSON-lines spool file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"spool file {path}: not UTF-8 text at byte {err.start}; expected "
                         f"a JSON-lines spool file") from err
    lines = text.splitlines()
    torn_tail = bool(text) and not text.endswith(("\n", "\r"))
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as err:
            if number == len(lines) and torn_tail:
                logger.warning("%s line %d is incomplete (interrupted write, no newline); "
                               "skipped", path, number)
                continue
            raise ValueError(f"spool file {path} line {number}: not valid JSON ({err})") from err
        except (ValueError, RecursionError) as err:
            raise ValueError(f"spool file {path} line {number}: {err}") from None
        where = f"spool file {path} line {number}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if record.get("op") not in SPOOL_OPS:
            raise ValueError(f"{where}: field 'op' must be one of "
                             f"{', '.join(SPOOL_OPS)}, got {record.get('op')!r}")
        missing = [k for k in _REQUIRED[record["op"]] if k not in record]
        if missing:
            raise ValueError(f"{where}: field '{missing[0]}' missing; a record of op "
                             f"{record['op']!r} needs {', '.join(_REQUIRED[record['op']])}")
        records.append((number, record))
    return records


def _no_constant(name):
    raise ValueError(f"{name} is not allowed (expected finite numbers; a metric that could "
                     f"not be computed is written as null)")


def replay_record(store: ResultsStore, record: dict) -> None:
    """Writes one spool record into `store` (idempotent upsert)."""
    record = dict(record)
    op = record.pop("op")
    if op == "trial":
        search_id = store.start_search(record.pop("experiment"), record.pop("search_name"),
                                       group=record.pop("search_group", None),
                                       config=record.pop("search_config", None))
        trial_id = record.pop("trial_id")
        store.record_trial(search_id, trial_id, **record)
    elif op == "evaluation":
        store.record_evaluation(record.pop("experiment"), record.pop("model_id"),
                                record.pop("metric"), record.pop("value"), **record)
    elif op == "checkpoint_removed":
        store.clear_model_path(record["experiment"], record["search_name"], record["trial_id"])
    else:
        raise ValueError(f"spool record: unknown op {op!r}")


def sync_spool(store: ResultsStore, path, *, remove=False) -> int:
    """Pushes every record of a spool file into `store`; returns how many.

    Safe to run more than once (upserts). With `remove=True` the file is first
    claimed (renamed under its lock), so records appended while the sync runs land
    in a new spool file and are never deleted unsynced; the claimed file is deleted
    once all of its records are in the store. Claimed files left by an interrupted
    sync are pushed too.
    """
    path = Path(path)
    if not remove:
        return _replay_file(store, path)
    leftovers = sorted(path.parent.glob(f"{path.name}.syncing-*"))
    if not path.exists() and not leftovers:
        raise FileNotFoundError(f"spool file {path} does not exist")
    claimed = leftovers + ([_claim(path)] if path.exists() else [])
    count = 0
    for part in claimed:
        count += _replay_file(store, part)
        part.unlink()
    return count


def _replay_file(store: ResultsStore, path: Path) -> int:
    """Replays every record of one file; a record the store refuses names its line."""
    records = _numbered_records(path)
    for number, record in records:
        try:
            replay_record(store, record)
        except (ValueError, TypeError, ArithmeticError) as err:
            raise ValueError(f"spool file {path} line {number}: {err}") from err
    return len(records)
