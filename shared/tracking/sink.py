"""Where a run's evaluation rows go: the store, or a spool file when it is unreachable.

Used by the studies that record their rows after training (lge_qa, bar_ad).

The store is opened before any model trains (`ResultsSink.open`), so a store that is
down costs nothing: its rows are appended to `<run folder>/results.spool.jsonl`
(`shared.tracking.spool`) and pushed later with
`medrepro store sync --spool <run folder>/results.spool.jsonl --store URL`. A store
that goes away during the run is handled the same way from that row on.
"""

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SPOOL_FILE = "results.spool.jsonl"


class ResultsSink:
    """Writes evaluation rows to the results store, or to a spool file.

    Args:
        store: ResultsStore or None (None: every row goes to the spool).
        spool_path: str or Path. The spool file used when the store is unreachable.
    """

    def __init__(self, store, spool_path, run=None):
        self.store = store
        self.spool_path = Path(spool_path)
        # Spooled rows carry the run too, so a later sync keeps their owner.
        self.run = run if run is not None else getattr(store, "run", None)
        self.stored = 0
        self.spooled = 0

    @classmethod
    def open(cls, store_url, run_dir) -> "ResultsSink":
        """Opens the store at `store_url` now; an unreachable one is logged and spooled to.

        Args:
            store_url: str or None. Results store URL (None: the default SQLite store).
            run_dir: str or Path. The run folder, which holds the spool file.
        """
        from shared.tracking.store import StoreUnreachableError, open_store, run_identity

        spool = Path(run_dir) / SPOOL_FILE
        try:
            store = open_store(store_url, run_dir=run_dir)
        except StoreUnreachableError as err:
            log.warning("%s; rows go to %s (push them later with `medrepro store sync --spool %s "
                        "--store URL`)", err, spool, spool)
            store = None
        return cls(store, spool, run=run_identity(run_dir))

    def ensure_experiment(self, name, config) -> None:
        """Creates the experiment with its config in the store (spooled rows create it bare)."""
        from shared.tracking.store import StoreUnreachableError

        if self.store is None:
            return
        try:
            self.store.ensure_experiment(name, config)
        except StoreUnreachableError as err:
            log.warning("%s; rows go to %s", err, self.spool_path)
            self._drop_store()

    def record_evaluation(self, experiment, model_id, metric, value, *, group=None, extra=None):
        """One evaluation row, into the store or (unreachable) the spool."""
        from shared.tracking.spool import append_spool
        from shared.tracking.store import StoreUnreachableError

        if self.run is not None:
            extra = {**(extra or {}), "run": self.run}
        if self.store is not None:
            try:
                self.store.record_evaluation(experiment, model_id, metric, value, group=group, extra=extra)
                self.stored += 1
                return
            except StoreUnreachableError as err:
                log.warning("%s; this and later rows go to %s", err, self.spool_path)
                self._drop_store()
        append_spool(self.spool_path, {"op": "evaluation", "experiment": experiment, "model_id": model_id,
                                       "metric": metric, "value": value, "group": group, "extra": extra})
        self.spooled += 1

    def _drop_store(self):
        try:
            self.store.close()
        except Exception:  # noqa: BLE001 - the store is already unreachable
            pass
        self.store = None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
