"""Fixtures of the tracking tests: a throwaway PostgreSQL server and store URLs."""

import pytest

from shared.testing.postgres import PostgresServer, find_binaries


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the test session (skipped when not installed)."""
    if find_binaries() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
                    "/usr/lib/postgresql/*/bin; `make postgres-binaries` installs them")
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """A fresh, empty store URL: a SQLite file, or a new database of the test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database()
