"""The store refuses databases it did not write and names corrupt files as corrupt."""

import hashlib
import sqlite3

import pytest

from shared.tracking.store import SchemaVersionError, StoreCorruptError, open_store

pytestmark = pytest.mark.no_keras


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_another_tools_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'a')")
    before = _digest(path)
    with pytest.raises(SchemaVersionError, match=r"not a medrepro store: .*users.*no medrepro 'meta'"):
        open_store(f"sqlite:///{path}")
    assert _digest(path) == before
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"users"}


def test_a_meta_table_alone_does_not_make_a_medrepro_store(tmp_path):
    path = tmp_path / "half.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY, trial_id TEXT)")
    with pytest.raises(SchemaVersionError, match=r"table 'trials' lacks column\(s\) search_id"):
        open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta")
    with pytest.raises(SchemaVersionError, match="no 'schema_version' row"):
        open_store(f"sqlite:///{path}")


def test_its_own_store_reopens(tmp_path):
    url = f"sqlite:///{tmp_path / 'own.sqlite'}"
    store = open_store(url)
    store.ensure_experiment("e")
    store.close()
    again = open_store(url)
    assert [e["name"] for e in again.experiments()] == ["e"]
    again.close()


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b"\x00" * 4096 + b"junk"])
def test_a_corrupt_file_is_reported_corrupt_not_unreachable(tmp_path, content):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreCorruptError, match=r"broken.sqlite is corrupt: file is not a database"):
        open_store(f"sqlite:///{path}")
    assert path.read_bytes() == content
