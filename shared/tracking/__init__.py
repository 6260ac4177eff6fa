"""Where results go: run folders, the results store, its spool, Keras Tuner hooks.

* `runs`: self-describing run folders (config, versions, git revision) and JSON output;
* `store`: the results store (SQLite or PostgreSQL): experiments, searches, trials,
  evaluations;
* `spool`: records kept locally while the store is unreachable, synced later;
* `tuning`: Keras Tuner tuners that log every trial to the store (`make_tuner`);
* `grid`: Keras Tuner's grid search with a grid position that survives a resume.
"""

from shared.tracking.runs import (
    environment_info,
    git_revision,
    make_run_dir,
    to_jsonable,
    write_json,
)
from shared.tracking.store import (
    DEFAULT_URL,
    mask_url,
    open_store,
    ResultsStore,
    SchemaVersionError,
    StoreCorruptError,
    StoreUnreachableError,
)
from shared.tracking.spool import append_spool, read_spool, replay_record, sync_spool
from shared.tracking.tuning import make_tuner, StoreLoggingMixin, trial_metrics

__all__ = [
    "DEFAULT_URL",
    "ResultsStore",
    "SchemaVersionError",
    "StoreCorruptError",
    "StoreLoggingMixin",
    "StoreUnreachableError",
    "append_spool",
    "environment_info",
    "git_revision",
    "make_run_dir",
    "make_tuner",
    "mask_url",
    "open_store",
    "read_spool",
    "replay_record",
    "sync_spool",
    "to_jsonable",
    "trial_metrics",
    "write_json",
]
