"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary folder.

The server listens on a free loopback port (and a unix socket inside the temporary
folder), trusts local connections, and runs with fsync off: it is for tests only.

PostgreSQL refuses to run as root. When the tests run as root (as in CI
containers), initdb and pg_ctl run as the `postgres` user when it exists, else as
`nobody`, and the temporary folder is handed to that user.

Example::

    with PostgresServer() as server:
        url = server.create_database("t1")   # postgresql://medrepro@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SUPERUSER = "medrepro"


def find_binaries():
    """The folder holding initdb and pg_ctl (PATH first, then /usr/lib/postgresql/*/bin).

    Returns:
        Path, or None when no PostgreSQL server binaries are installed.
    """
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).resolve().parent == Path(pg_ctl).resolve().parent:
        return Path(initdb).resolve().parent

    def version(path):
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return -1.0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version,
                         reverse=True):
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unprivileged_user():
    """(uid, gid) to run the server as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists; "
                       "PostgreSQL refuses to run as root")


class PostgresServer:
    """Starts a temporary PostgreSQL cluster; `stop_server` / `start_server` pause it.

    Args:
        bin_dir: folder of initdb / pg_ctl; found with `find_binaries` when None.
        port: TCP port on 127.0.0.1; a free one when None.
        startup_timeout: seconds pg_ctl waits for the server.
    """

    def __init__(self, bin_dir=None, *, port=None, startup_timeout=60):
        found = Path(bin_dir) if bin_dir is not None else find_binaries()
        if found is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found on "
                                    "PATH or in /usr/lib/postgresql/*/bin; install the "
                                    "'postgresql' package")
        self.bin_dir = found
        self.port = _free_port() if port is None else int(port)
        self.startup_timeout = int(startup_timeout)
        self.user = _unprivileged_user()
        self.root = None
        self.running = False

    # ------------------------------------------------------------------ helpers
    def _run(self, *args, check=True):
        kwargs = {}
        if self.user is not None:
            kwargs.update(user=self.user[0], group=self.user[1], extra_groups=[])
        env = dict(os.environ, LC_ALL="C", LANG="C")
        if self.user is not None:
            env["HOME"] = str(self.root)
        result = subprocess.run([str(self.bin_dir / args[0]), *map(str, args[1:])],
                                capture_output=True, text=True, env=env, cwd=self.root,
                                timeout=self.startup_timeout + 30, **kwargs)
        if check and result.returncode != 0:
            log = ""
            if self.root is not None and (self.root / "server.log").exists():
                log = (self.root / "server.log").read_text()[-2000:]
            raise RuntimeError(f"{args[0]} failed with code {result.returncode}:\n"
                               f"{result.stdout}\n{result.stderr}\n{log}")
        return result

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "PostgresServer":
        """Creates the cluster (initdb) and starts the server."""
        self.root = Path(tempfile.mkdtemp(prefix="medrepro-pg-"))
        self.socket_dir.mkdir()
        if self.user is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, *self.user)
            os.chmod(self.root, 0o700)
        self._run("initdb", "-D", self.data_dir, "-U", SUPERUSER, "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        self.start_server()
        return self

    def start_server(self) -> None:
        """Starts (or restarts) the server on the same port and data."""
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                   f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   f"-c max_connections=60 -c shared_buffers=16MB")
        self._run("pg_ctl", "-D", self.data_dir, "-l", self.root / "server.log", "-w",
                  "-t", self.startup_timeout, "-o", options, "start")
        self.running = True

    def stop_server(self) -> None:
        """Stops the server at once (connections dropped); the data stays."""
        if self.running:
            self._run("pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w", "stop",
                      check=False)
            self.running = False

    def server_pids(self) -> list:
        """The postmaster and every backend process of the running server."""
        import subprocess

        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return [pid] + [int(p) for p in children.stdout.split()]

    def freeze(self) -> None:
        """SIGSTOPs every server process: connections stay open, nothing answers."""
        import signal

        for pid in self.server_pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONTs every server process."""
        import signal

        for pid in self.server_pids():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stops the server and deletes the cluster."""
        self.stop_server()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ databases
    def url(self, database="postgres") -> str:
        """SQLAlchemy URL of a database of this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name=None) -> str:
        """Creates a database (a random name when None) and returns its URL."""
        import psycopg2

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name: expected letters, digits and '_', got {name!r}")
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                                        dbname="postgres", connect_timeout=5)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)
