"""The results store: experiments, searches, trials and evaluations in one database.

One interface over SQLAlchemy Core. A SQLite file is the default
(`sqlite:///runs/results.sqlite`); a lab that runs on several machines points every
one of them at a PostgreSQL database (`postgresql://user:password@host/db`, driver
psycopg2).

Every write is one transaction and an upsert on the row's natural key, so re-running
or resuming a search never duplicates a row, and several processes (or machines)
writing at once never lose one:

* trials are keyed on (search, trial id), searches on (experiment, name),
  evaluations on (experiment, model id, metric, split);
* SQLite runs in WAL mode with a busy timeout and takes its write lock when a
  transaction begins (`BEGIN IMMEDIATE`), so concurrent writers queue instead of
  failing; PostgreSQL uses `INSERT ... ON CONFLICT DO UPDATE`.

The schema is created when missing and its version is recorded in the `meta`
table; a store written by another schema version is refused with a clear error.

Trial records that cannot reach the store (the server went away mid-search) are kept
in a local spool file (`shared.tracking.spool`) and pushed later.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import weakref
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from shared import __version__
from shared.tracking.runs import (environment_info, finite_or_none, git_revision as _git_revision,
                                  to_jsonable)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_URL = "sqlite:///runs/results.sqlite"
TRIAL_STATUSES = ("completed", "failed", "running")
# The key PostgreSQL's advisory lock uses while the schema is created.
_SCHEMA_LOCK_KEY = 7_316_402_551

metadata = sa.MetaData()

meta_table = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

experiments_table = sa.Table(
    "experiments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("config", sa.Text, nullable=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

searches_table = sa.Table(
    "searches", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("group_name", sa.String(200), nullable=True),
    sa.Column("config", sa.Text, nullable=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("experiment_id", "name", name="uq_searches_experiment_name"),
)

trials_table = sa.Table(
    "trials", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("search_id", sa.Integer, sa.ForeignKey("searches.id"), nullable=False),
    sa.Column("trial_id", sa.String(200), nullable=False),
    sa.Column("group_name", sa.String(200), nullable=True),
    sa.Column("hyperparameters", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
    sa.Column("duration_s", sa.Float, nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("package_version", sa.String(64), nullable=True),
    sa.Column("git_revision", sa.String(64), nullable=True),
    sa.Column("model_path", sa.Text, nullable=True),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("search_id", "trial_id", name="uq_trials_search_trial"),
)

evaluations_table = sa.Table(
    "evaluations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("model_id", sa.String(200), nullable=False),
    sa.Column("metric", sa.String(200), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("split", sa.String(64), nullable=False),
    sa.Column("group_name", sa.String(200), nullable=True),
    sa.Column("extra", sa.Text, nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("experiment_id", "model_id", "metric", "split",
                        name="uq_evaluations_key"),
)


class StoreUnreachableError(RuntimeError):
    """The results store cannot be reached (server down, path not writable, ...)."""


class SchemaVersionError(RuntimeError):
    """The store was written by a different schema version than this code expects,
    or the database holds tables that are not a medrepro store's."""


class StoreCorruptError(RuntimeError):
    """The store's file is not a readable database (truncated, overwritten, not SQLite)."""


_CORRUPT_MARKERS = ("file is not a database", "database disk image is malformed",
                    "malformed database schema", "file is encrypted")


def _is_corrupt_error(err) -> bool:
    text = str(getattr(err, "orig", None) or err).lower()
    return any(marker in text for marker in _CORRUPT_MARKERS)


def _corrupt_store(masked_url, err) -> StoreCorruptError:
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    return StoreCorruptError(f"results store {masked_url} is corrupt: {reason}; expected a "
                             f"SQLite database medrepro wrote (move the file aside to start "
                             f"a new store)")


def _foreign_store(masked_url, reason) -> SchemaVersionError:
    return SchemaVersionError(f"results store {masked_url} is not a medrepro store: {reason}; "
                              f"expected an empty database or one medrepro created (nothing "
                              f"was changed)")


def _foreign_schema(conn) -> str | None:
    """Why the database is not a medrepro store, or None when it is one (or empty).

    The `meta` table alone is not trusted: a database holding tables but no medrepro
    `meta` row is another tool's, and each of medrepro's tables that exists must
    have every column this schema writes.
    """
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    if not existing:
        return None
    if meta_table.name not in existing:
        return (f"it holds tables of another application ({', '.join(sorted(existing)[:5])}) "
                f"and no medrepro 'meta' table")
    has_version = conn.execute(sa.select(meta_table.c.value)
                               .where(meta_table.c.key == "schema_version")).first()
    if has_version is None:
        return "its 'meta' table has no 'schema_version' row"
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in columns]
        if missing:
            return f"table {table.name!r} lacks column(s) {', '.join(missing)}"
    return None


_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]+)")
# The drivers this store is written and tested against.
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg2")


def _split_userinfo(text: str):
    """(scheme, userinfo, rest) of `scheme://userinfo@rest`, cut at the LAST `@` before
    the path or query: an unencoded `@` in a password belongs to the password."""
    if "://" not in text:
        return None
    scheme, rest = text.split("://", 1)
    end = len(rest)
    for stop in ("?", "#"):
        if stop in rest:
            end = min(end, rest.index(stop))
    at = rest.rfind("@", 0, end)
    if at < 0:
        return None
    return scheme, rest[:at], rest[at + 1:]


def _raw_password(url) -> str | None:
    parts = _split_userinfo(str(url))
    if parts is None or ":" not in parts[1]:
        return None if parts is None else (parts[1] if "@" in parts[1] else None)
    return parts[1].split(":", 1)[1]


def secret_pieces(url) -> list:
    """(text, replacement) pairs that hide `url`'s password in a driver's message.

    The whole password anywhere; for one holding an unencoded `@`, each tail after an
    `@` where it stands before an `@` (libpq names the 'host' it parsed from after the
    first `@`: `"ss@db"`), and the head where it follows the user name. Longest first.
    """
    text = str(url)
    pairs = {}
    password = _raw_password(text)
    if password:
        pairs[password] = "***"
        parts = password.split("@")
        for i in range(1, len(parts)):
            pairs["@".join(parts[i:]) + "@"] = "***@"
            pairs[":" + "@".join(parts[:i]) + "@"] = ":***@"
    for match in _PASSWORD_PARAM.finditer(text):
        value = match.group(2)
        pairs[value] = "***"
        if value.strip("'"):
            pairs[value.strip("'")] = "***"
    return sorted(((k, v) for k, v in pairs.items() if k.strip("@:")),
                  key=lambda kv: len(kv[0]), reverse=True)


def scrub(text, url) -> str:
    """`text` (a driver's message) with every piece of `url`'s password replaced by `***`."""
    out = str(text)
    for piece, replacement in secret_pieces(url):
        out = out.replace(piece, replacement)
    return out


def mask_url(url) -> str:
    """The store URL with every password replaced by `***` (for messages, logs, files).

    Covers the password of `scheme://user:password@host/db` (everything between the
    user name and the last `@` before the path, so an unencoded `@` in a password
    hides it whole), a `password=` query parameter and a libpq key/value string
    (`host=h user=u password=pw`).
    """
    text = str(url)
    parts = _split_userinfo(text)
    if parts is not None:
        scheme, userinfo, rest = parts
        user = userinfo.split(":", 1)[0] if ":" in userinfo else userinfo
        if ":" in userinfo:
            userinfo = f"{user}:***"
        elif "@" in userinfo:  # no ':': the part before the last '@' cannot all be a name
            userinfo = "***"
        text = f"{scheme}://{userinfo}@{rest}"
    try:
        if parts is None or "@" not in parts[1]:
            text = make_url(text).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown without credentials
        pass
    return _PASSWORD_PARAM.sub(lambda m: m.group(1) + "***", text)


def run_environment() -> dict:
    """`shared.runs.environment_info()`, without importing TensorFlow when it is not loaded.

    Importing TensorFlow only for its version string would cost seconds in every
    command that just reads or writes the store.
    """
    if "tensorflow" in sys.modules:
        return environment_info()
    return {"medrepro_version": __version__, "git_revision": _git_revision(),
            "host": socket.gethostname(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _to_datetime(value, field):
    """Accepts None, a datetime, an ISO-8601 string or POSIX seconds; returns aware UTC."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            dt = _dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{field}: expected POSIX seconds of a date in years 1-9999, "
                             f"got {value!r}") from None
    elif isinstance(value, str):
        try:
            dt = _dt.datetime.fromisoformat(value)
        except ValueError as err:
            raise ValueError(f"{field}: expected an ISO-8601 time, got {value!r}") from err
    else:
        raise ValueError(f"{field}: expected a datetime, ISO string or POSIX seconds, "
                         f"got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return dt.astimezone(_dt.timezone.utc)


def _iso(value):
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive values; they were stored as UTC
        value = value.replace(tzinfo=_dt.timezone.utc)
    return value.isoformat()


def _dumps(value, field):
    try:
        return json.dumps(finite_or_none(to_jsonable(value)), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{field}: not JSON-serialisable ({err})") from err


def _loads(text):
    return None if text is None else json.loads(text)


def _is_connection_error(err) -> bool:
    """Whether a database error means 'cannot talk to the server' (vs. a bad query)."""
    if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
        return True
    if isinstance(err, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        text = str(err.orig if getattr(err, "orig", None) is not None else err).lower()
        markers = ("connect", "connection", "server closed", "terminating", "unable to open",
                   "could not translate host", "timeout expired", "no such host",
                   "the database system is shutting down", "starting up", "readonly",
                   "disk i/o error", "database is locked")
        return any(m in text for m in markers)
    return False


class ResultsStore:
    """Reads and writes experiments, searches, trials and evaluations.

    Create it with `open_store(url)`, which also connects, creates missing tables
    and checks the schema version.

    Args:
        url: str. SQLAlchemy URL: `sqlite:///path.sqlite` or
            `postgresql://user:password@host:port/db`.
        connect_timeout: float. Seconds to wait for a PostgreSQL connection, and
            for a SQLite lock held by another writer (busy timeout, at least 30 s).
        write_timeout: float or None, default 10. Seconds a PostgreSQL transaction
            may take; a server that stops answering (frozen, a dead network path
            whose TCP connection stays open) makes the transaction fail with
            StoreUnreachableError after that long instead of blocking, so a search
            spools its records and training goes on. None: no bound.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10.0, write_timeout=10.0):
        self.url = str(url)
        self.masked_url = mask_url(self.url)
        try:
            parsed = make_url(self.url)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"results store URL {self.masked_url!r} is not a valid "
                             f"SQLAlchemy URL (expected sqlite:///path or "
                             f"postgresql://user@host/db): {scrub(err, self.url)}") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"results store URL {self.masked_url!r}: backend "
                             f"{self.dialect!r} is not supported (expected sqlite or postgresql)")
        if parsed.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(f"results store URL {self.masked_url!r}: driver "
                             f"{parsed.drivername!r} is not supported (expected one of "
                             f"{', '.join(SUPPORTED_DRIVERS)})")
        database = parsed.database or ""
        if self.dialect == "sqlite" and (database in ("", ":memory:")
                                         or "mode=memory" in database
                                         or parsed.query.get("mode") == "memory"):
            raise ValueError(f"results store URL {self.masked_url!r} is an in-memory SQLite "
                             f"database: every row would be lost when the command ends; "
                             f"expected sqlite:///path/to/results.sqlite")
        self._env = None
        self.run = None  # the run whose rows this store writes (`set_run`)
        self._checked_experiments = set()
        self._env_lock = threading.Lock()
        if write_timeout is not None and not (float(write_timeout) > 0):
            raise ValueError(f"write_timeout: expected seconds > 0 or None, got {write_timeout!r}")
        self.write_timeout = None if write_timeout is None else float(write_timeout)
        self._connections = weakref.WeakSet()
        self._stalled = threading.Event()
        if self.dialect == "sqlite":
            # Writers queue on SQLite's lock; a long wait is better than a lost row.
            self.engine = self._sqlite_engine(parsed, max(30.0, float(connect_timeout)))
        else:
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg2")
            self.engine = sa.create_engine(
                parsed, pool_pre_ping=True, future=True,
                connect_args={"connect_timeout": max(1, int(math.ceil(connect_timeout))),
                              # A peer that vanished is noticed by the kernel too.
                              "keepalives": 1, "keepalives_idle": 10,
                              "keepalives_interval": 5, "keepalives_count": 3},
            )
            event.listen(self.engine, "connect",
                         lambda dbapi_connection, record: self._connections.add(dbapi_connection))
            event.listen(self.engine, "do_connect", self._refuse_while_stalled)

    # ------------------------------------------------------------------ setup
    def _sqlite_engine(self, parsed, busy_timeout):
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreUnreachableError(
                    f"results store {self.masked_url} is unreachable: cannot create "
                    f"folder {path.parent} ({err})") from err
            if path.is_dir():
                raise StoreUnreachableError(
                    f"results store {self.masked_url} is unreachable: {path} is a folder; "
                    f"expected a SQLite file (or a path where one can be created)")
            if path.is_file() and path.stat().st_size > 0:
                self._check_existing_sqlite(path)
        engine = sa.create_engine(parsed, future=True,
                                  connect_args={"timeout": float(busy_timeout)})
        busy_ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's own
            # deferred transactions, which can deadlock two writers.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            if database and database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # Take the write lock at once: a deferred transaction that later wants to
            # write cannot wait for the lock in WAL mode and would fail instead.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _check_existing_sqlite(self, path: Path) -> None:
        """Refuses a corrupt file or another tool's database before anything writes to
        it (even switching on WAL mode would change the file)."""
        import sqlite3

        uri = f"{path.resolve().as_uri().replace('file://', 'file:', 1)}?mode=ro"
        probe = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
        try:
            with probe.connect() as conn:
                reason = _foreign_schema(conn)
        except sa.exc.SQLAlchemyError as err:
            if _is_corrupt_error(err):
                raise _corrupt_store(self.masked_url, err) from err
            return  # unreadable for another reason: the real connection reports it
        finally:
            probe.dispose()
        if reason is not None:
            raise _foreign_store(self.masked_url, reason)

    def _initialise(self):
        """Creates missing tables and checks the schema version."""
        with self._begin() as conn:
            if self.dialect == "postgresql":
                # Several workers may start at once; one creates, the others wait.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": _SCHEMA_LOCK_KEY})
            reason = _foreign_schema(conn)
            if reason is not None:
                raise _foreign_store(self.masked_url, reason)
            metadata.create_all(conn, checkfirst=True)
            row = conn.execute(sa.select(meta_table.c.value)
                               .where(meta_table.c.key == "schema_version")).first()
            if row is None:
                conn.execute(meta_table.insert().values(key="schema_version",
                                                        value=str(SCHEMA_VERSION)))
            elif str(row[0]) != str(SCHEMA_VERSION):
                raise SchemaVersionError(
                    f"results store {self.masked_url} has schema version {row[0]}, "
                    f"this medrepro expects {SCHEMA_VERSION}; use a new store URL or "
                    f"migrate the database")

    @contextlib.contextmanager
    def _begin(self):
        """A transaction; connection failures become StoreUnreachableError.

        On PostgreSQL the transaction (the pool's liveness check included) is bounded
        by `write_timeout`: when it runs out, the sockets of this store's connections
        are shut down, which makes the blocked call fail at once.
        """
        timer = None
        if self.dialect == "postgresql" and self.write_timeout is not None:
            timer = threading.Timer(self.write_timeout, self._break_connections)
            timer.daemon = True
            timer.start()
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as err:
            if self._stalled.is_set():
                raise StoreUnreachableError(
                    f"results store {self.masked_url} did not answer within "
                    f"{self.write_timeout:g} s (server stalled?)") from err
            if _is_connection_error(err):
                reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
                raise StoreUnreachableError(
                    f"results store {self.masked_url} is unreachable: "
                    f"{scrub(reason, self.url)}") from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._stalled.clear()

    def _refuse_while_stalled(self, dialect, connection_record, cargs, cparams):
        """No reconnection attempt (up to connect_timeout more) once a write overran."""
        if self._stalled.is_set():
            raise dialect.loaded_dbapi.OperationalError(
                "connection refused: the store stalled during this transaction")

    def _break_connections(self):
        """Shuts down the sockets of every open connection (a transaction overran)."""
        self._stalled.set()
        for connection in list(self._connections):
            with contextlib.suppress(Exception):
                fd = connection.fileno()
                sock = socket.socket(fileno=os.dup(fd))
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.close()
        logger.warning("results store %s did not answer within %g s; its connections were "
                       "reset", self.masked_url, self.write_timeout)

    def _insert(self, table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def environment(self) -> dict:
        """Host, package version and git revision of this process (computed once)."""
        with self._env_lock:
            if self._env is None:
                self._env = run_environment()
            return self._env

    def close(self):
        """Releases the connection pool."""
        self.engine.dispose()

    def __repr__(self):
        return f"ResultsStore({self.masked_url!r})"

    # ------------------------------------------------------------------ writes
    def ping(self) -> bool:
        """Checks that the store answers; raises StoreUnreachableError otherwise."""
        with self._begin() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    def schema_version(self) -> int:
        """The schema version recorded in the store."""
        with self._begin() as conn:
            value = conn.execute(sa.select(meta_table.c.value)
                                 .where(meta_table.c.key == "schema_version")).scalar_one()
        return int(value)

    def _experiment_id(self, conn, name, config=None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"experiment: expected a non-empty name, got {name!r}")
        values = {"name": name, "created": _now()}
        if config is not None:
            values["config"] = _dumps(config, "config")
        stmt = self._insert(experiments_table).values(**values)
        if config is not None:
            stmt = stmt.on_conflict_do_update(index_elements=["name"],
                                              set_={"config": stmt.excluded.config})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["name"])
        conn.execute(stmt)
        return conn.execute(sa.select(experiments_table.c.id)
                            .where(experiments_table.c.name == name)).scalar_one()

    def ensure_experiment(self, name: str, config=None) -> int:
        """Creates the experiment when missing (updates its config when given).

        Args:
            name: str. Experiment name, e.g. `heatmap_loss_exp1`.
            config: dict or dataclass, optional. Stored as JSON.

        Returns:
            The experiment's integer id.
        """
        with self._begin() as conn:
            return self._experiment_id(conn, name, config)

    def start_search(self, experiment: str, search_name: str, *, group=None, config=None) -> int:
        """Creates (or finds) a search of an experiment; returns its id.

        Calling it again with the same names returns the same id, so a resumed or
        distributed search shares one row.

        Args:
            experiment: str. Experiment name (created when missing).
            search_name: str. Name of the search inside the experiment.
            group: str, optional. Group / arm the search belongs to (e.g. "heatmap").
            config: dict, optional. Tuner settings, stored as JSON.
        """
        if not isinstance(search_name, str) or not search_name:
            raise ValueError(f"search_name: expected a non-empty name, got {search_name!r}")
        with self._begin() as conn:
            exp_id = self._experiment_id(conn, experiment)
            values = {"experiment_id": exp_id, "name": search_name, "group_name": group,
                      "created": _now()}
            if config is not None:
                values["config"] = _dumps(config, "config")
            stmt = self._insert(searches_table).values(**values)
            update = {"group_name": stmt.excluded.group_name} if group is not None else {}
            if config is not None:
                update["config"] = stmt.excluded.config
            if update:
                stmt = stmt.on_conflict_do_update(index_elements=["experiment_id", "name"],
                                                  set_=update)
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=["experiment_id", "name"])
            conn.execute(stmt)
            return conn.execute(sa.select(searches_table.c.id).where(
                (searches_table.c.experiment_id == exp_id)
                & (searches_table.c.name == search_name))).scalar_one()

    def record_trial(self, search_id: int, trial_id, *, group=None, hyperparameters, metrics,
                     status="completed", error=None, started=None, ended=None,
                     duration_s=None, model_path=None, host=None, package_version=None,
                     git_revision=None) -> None:
        """Inserts or updates one trial of a search (keyed on search id + trial id).

        Args:
            search_id: int. From `start_search`.
            trial_id: str. The tuner's trial id.
            group: str, optional. Group / arm (defaults to the search's group).
            hyperparameters: dict. Hyperparameter values.
            metrics: dict. Final metric values (NaN / inf stored as null).
            status: "completed", "failed" or "running".
            error: str, optional. Error message / traceback of a failed trial.
            started, ended: datetime, ISO string or POSIX seconds, optional.
            duration_s: float, optional. Defaults to ended - started when both given.
            model_path: str, optional. Where the trial's model files are kept.
            host, package_version, git_revision: optional overrides of this
                process's values (used when replaying records written elsewhere).
        """
        if status not in TRIAL_STATUSES:
            raise ValueError(f"status: expected one of {TRIAL_STATUSES}, got {status!r}")
        if not isinstance(hyperparameters, dict):
            raise ValueError(f"hyperparameters: expected a dict, got "
                             f"{type(hyperparameters).__name__}")
        if not isinstance(metrics, dict):
            raise ValueError(f"metrics: expected a dict, got {type(metrics).__name__}")
        started_dt = _to_datetime(started, "started")
        ended_dt = _to_datetime(ended, "ended")
        if duration_s is None and started_dt is not None and ended_dt is not None:
            duration_s = (ended_dt - started_dt).total_seconds()
        env = ({} if None not in (host, package_version, git_revision)
               else self.environment())
        values = {
            "search_id": int(search_id), "trial_id": str(trial_id),
            "hyperparameters": _dumps(hyperparameters, "hyperparameters"),
            "metrics": _dumps(metrics, "metrics"),
            "status": status, "error": error, "started": started_dt, "ended": ended_dt,
            "duration_s": None if duration_s is None else float(duration_s),
            "host": host if host is not None else env.get("host"),
            "package_version": (package_version if package_version is not None
                                else env.get("medrepro_version")),
            "git_revision": git_revision if git_revision is not None else env.get("git_revision"),
            "model_path": None if model_path is None else str(model_path),
            "updated": _now(),
        }
        with self._begin() as conn:
            if group is None:
                group = conn.execute(sa.select(searches_table.c.group_name).where(
                    searches_table.c.id == int(search_id))).scalar()
            values["group_name"] = group
            exists = conn.execute(sa.select(searches_table.c.id).where(
                searches_table.c.id == int(search_id))).first()
            if exists is None:
                raise ValueError(f"search_id: no search with id {search_id} in "
                                 f"{self.masked_url}; call start_search first")
            stmt = self._insert(trials_table).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["search_id", "trial_id"],
                set_={k: stmt.excluded[k] for k in values if k not in ("search_id", "trial_id")})
            conn.execute(stmt)

    def clear_model_path(self, experiment: str, search_name: str, trial_id) -> bool:
        """Forgets the model files of one trial (they were deleted); True if a row changed."""
        e, s, t = experiments_table, searches_table, trials_table
        search_ids = (sa.select(s.c.id).join(e, s.c.experiment_id == e.c.id)
                      .where((e.c.name == experiment) & (s.c.name == search_name)))
        with self._begin() as conn:
            changed = conn.execute(
                t.update().where(t.c.search_id.in_(search_ids.scalar_subquery())
                                 & (t.c.trial_id == str(trial_id))
                                 & t.c.model_path.is_not(None))
                .values(model_path=None, updated=_now()))
            return changed.rowcount > 0

    def record_evaluation(self, experiment: str, model_id, metric: str, value, *, split="test",
                          group=None, extra=None) -> None:
        """Inserts or updates one evaluation (experiment, model id, metric, split).

        Args:
            experiment: str. Experiment name (created when missing).
            model_id: str. Identifies the trained model (e.g. "cce_seed3").
            metric: str. Metric name, e.g. "accuracy".
            value: float. NaN / inf are stored as null.
            split: str. Data split. Defaults to "test".
            group: str, optional. Group / arm of the model (e.g. "heatmap").
            extra: dict, optional. Further fields, stored as JSON (and usable in
                `report --by` / `--where`).

        Raises:
            ValueError: the row exists and was written by another run (its `run`
                differs from this store's `run`, or from `extra["run"]`), or the
                experiment holds rows written before rows named their run.
        """
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric: expected a non-empty name, got {metric!r}")
        try:
            number = None if value is None else float(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"value of {metric!r} for model {model_id!r}: expected a number, "
                             f"got {value!r}") from err
        if number is not None and not math.isfinite(number):
            number = None
        run = self.run if self.run is not None else (extra or {}).get("run")
        if run is not None:
            extra = {**(extra or {}), "run": str(run)}
        with self._begin() as conn:
            exp_id = self._experiment_id(conn, experiment)
            if run is not None:
                self._check_owner(conn, exp_id, experiment, str(model_id), metric, str(split),
                                  str(run))
            values = {"experiment_id": exp_id, "model_id": str(model_id), "metric": metric,
                      "value": number, "split": str(split), "group_name": group,
                      "extra": None if extra is None else _dumps(extra, "extra"),
                      "host": self.environment().get("host"), "updated": _now()}
            stmt = self._insert(evaluations_table).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["experiment_id", "model_id", "metric", "split"],
                set_={k: stmt.excluded[k] for k in ("value", "group_name", "extra", "host",
                                                     "updated")})
            conn.execute(stmt)

    def _check_owner(self, conn, exp_id, experiment, model_id, metric, split, run) -> None:
        """Refuses to replace a row of another run, and rows of a store written before
        rows named their run (they cannot be told apart from this run's)."""
        v = evaluations_table
        if exp_id not in self._checked_experiments:
            legacy = conn.execute(
                sa.select(v.c.model_id).where((v.c.experiment_id == exp_id)
                                              & (v.c.extra.is_(None)
                                                 | ~v.c.extra.like('%"run": %')))
                .limit(1)).first()
            if legacy is not None:
                raise ValueError(
                    f"results store {self.masked_url}: experiment {experiment!r} holds rows "
                    f"written before each row named its run (e.g. model {legacy[0]!r}); "
                    f"expected rows that name their run: write this run to a new store "
                    f"(--store) or remove that experiment's old rows first")
            self._checked_experiments.add(exp_id)
        row = conn.execute(sa.select(v.c.extra).where(
            (v.c.experiment_id == exp_id) & (v.c.model_id == model_id)
            & (v.c.metric == metric) & (v.c.split == split))).first()
        if row is None:
            return
        previous = (_loads(row[0]) or {}).get("run") if row[0] else None
        if previous != run:
            raise ValueError(
                f"results store {self.masked_url}: row (experiment {experiment!r}, model "
                f"{model_id!r}, metric {metric!r}, split {split!r}) was written by run "
                f"{previous or '(unnamed)'}; run {run} would replace it. Expected model ids "
                f"unique per run: resume that run (--resume --out), or write to another "
                f"store (--store)")

    # ------------------------------------------------------------------ reads
    def experiments(self) -> list[dict]:
        """All experiments with their number of searches, trials and evaluations."""
        e, s, t, v = experiments_table, searches_table, trials_table, evaluations_table
        with self._begin() as conn:
            rows = conn.execute(sa.select(e).order_by(e.c.name)).mappings().all()
            out = []
            for row in rows:
                n_search = conn.execute(sa.select(sa.func.count()).select_from(s)
                                        .where(s.c.experiment_id == row["id"])).scalar_one()
                n_trial = conn.execute(sa.select(sa.func.count()).select_from(
                    t.join(s, t.c.search_id == s.c.id)).where(
                    s.c.experiment_id == row["id"])).scalar_one()
                n_eval = conn.execute(sa.select(sa.func.count()).select_from(v)
                                      .where(v.c.experiment_id == row["id"])).scalar_one()
                out.append({"id": row["id"], "name": row["name"],
                            "config": _loads(row["config"]), "created": _iso(row["created"]),
                            "searches": n_search, "trials": n_trial, "evaluations": n_eval})
        return out

    def searches(self, experiment=None) -> list[dict]:
        """Searches (of one experiment, or all)."""
        e, s = experiments_table, searches_table
        query = sa.select(s, e.c.name.label("experiment")).join(e, s.c.experiment_id == e.c.id)
        if experiment is not None:
            query = query.where(e.c.name == experiment)
        with self._begin() as conn:
            rows = conn.execute(query.order_by(s.c.id)).mappings().all()
        return [{"id": r["id"], "experiment": r["experiment"], "search_name": r["name"],
                 "group": r["group_name"], "config": _loads(r["config"]),
                 "created": _iso(r["created"])} for r in rows]

    def trials(self, experiment=None, search_name=None) -> list[dict]:
        """Trials, optionally of one experiment and/or search, ordered by search and id.

        Returns:
            list of dicts with experiment, search_name, search_id, trial_id, group,
            hyperparameters, metrics, status, error, started, ended (ISO strings),
            duration_s, host, package_version, git_revision, model_path.
        """
        e, s, t = experiments_table, searches_table, trials_table
        query = (sa.select(t, s.c.name.label("search_name"), e.c.name.label("experiment"))
                 .join(s, t.c.search_id == s.c.id).join(e, s.c.experiment_id == e.c.id))
        if experiment is not None:
            query = query.where(e.c.name == experiment)
        if search_name is not None:
            query = query.where(s.c.name == search_name)
        with self._begin() as conn:
            rows = conn.execute(query.order_by(t.c.search_id, t.c.trial_id)).mappings().all()
        return [{
            "experiment": r["experiment"], "search_name": r["search_name"],
            "search_id": r["search_id"], "trial_id": r["trial_id"], "group": r["group_name"],
            "hyperparameters": _loads(r["hyperparameters"]), "metrics": _loads(r["metrics"]),
            "status": r["status"], "error": r["error"], "started": _iso(r["started"]),
            "ended": _iso(r["ended"]), "duration_s": r["duration_s"], "host": r["host"],
            "package_version": r["package_version"], "git_revision": r["git_revision"],
            "model_path": r["model_path"],
        } for r in rows]

    def evaluations(self, experiment: str, metric=None) -> list[dict]:
        """Evaluations of an experiment (of one metric, or all), ordered by model id.

        Returns:
            list of dicts with experiment, model_id, metric, value, split, group,
            extra, host, updated.
        """
        e, v = experiments_table, evaluations_table
        query = (sa.select(v, e.c.name.label("experiment"))
                 .join(e, v.c.experiment_id == e.c.id).where(e.c.name == experiment))
        if metric is not None:
            query = query.where(v.c.metric == metric)
        with self._begin() as conn:
            rows = conn.execute(query.order_by(v.c.model_id, v.c.metric, v.c.split)
                                ).mappings().all()
        return [{"experiment": r["experiment"], "model_id": r["model_id"],
                 "metric": r["metric"], "value": r["value"], "split": r["split"],
                 "group": r["group_name"], "extra": _loads(r["extra"]), "host": r["host"],
                 "updated": _iso(r["updated"])} for r in rows]


def run_identity(run_dir) -> str:
    """How a run is named in the rows it writes: `host:/absolute/run/folder`."""
    return f"{socket.gethostname()}:{Path(run_dir).resolve()}"


def open_store(url=None, *, connect_timeout: float = 10.0, write_timeout=10.0,
               run_dir=None) -> ResultsStore:
    """Opens (and if needed creates) the results store at `url`.

    Connects at once, creates missing tables and checks the schema version, so an
    unreachable store fails here, before any training.

    Args:
        url: str, optional. `sqlite:///path` or `postgresql://user:pw@host/db`;
            None means `sqlite:///runs/results.sqlite`.
        connect_timeout: float. Seconds to wait for the server / a SQLite lock.
        write_timeout: float or None, default 10. Seconds a PostgreSQL transaction
            may take before it fails with StoreUnreachableError (see ResultsStore).
        run_dir: str or Path, optional. The run folder whose rows this store writes:
            each evaluation row records it, and a row another run wrote is never
            replaced (`ResultsStore.record_evaluation`).

    Returns:
        A ResultsStore.

    Raises:
        StoreUnreachableError: the store cannot be reached; the message names the
            URL (password masked).
        SchemaVersionError: the store has a different schema version.
        ValueError: the URL is malformed or of an unsupported backend.
    """
    store = ResultsStore(DEFAULT_URL if url is None else url, connect_timeout=connect_timeout,
                         write_timeout=write_timeout)
    if run_dir is not None:
        store.run = run_identity(run_dir)
    try:
        store._initialise()
    except StoreUnreachableError:
        store.close()
        raise
    except SchemaVersionError:
        store.close()
        raise
    except sa.exc.SQLAlchemyError as err:
        store.close()
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        if _is_corrupt_error(err):
            raise _corrupt_store(store.masked_url, err) from err
        raise StoreUnreachableError(
            f"results store {store.masked_url} is unreachable: "
            f"{scrub(reason, store.url)}") from None
    except Exception as err:  # noqa: BLE001 - driver errors raised outside SQLAlchemy
        store.close()
        if isinstance(err, (ValueError, RuntimeError)):
            raise
        raise StoreUnreachableError(
            f"results store {store.masked_url} is unreachable: "
            f"{scrub(err, store.url)}") from None
    return store
