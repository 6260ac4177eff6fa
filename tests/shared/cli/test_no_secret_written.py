"""A store password given on the command line reaches no file a run writes and
nothing it prints: every paper's tiny preset against a real PostgreSQL server."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli.papers import PAPERS

PASSWORD = "Kq7vTz3secretPw"


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_store_password_is_written_nowhere(paper, postgres_server, tmp_path):
    database = postgres_server.create_database()
    # The test server trusts local connections, so any password is accepted; the
    # URL carries it exactly as a user's would.
    url = database.replace("postgresql://medrepro@", f"postgresql://medrepro:{PASSWORD}@")
    assert PASSWORD in url, database
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "MEDREPRO_STORE": url,
           "MPLCONFIGDIR": str(home / "mpl")}
    result = subprocess.run(
        [sys.executable, "-m", "shared", paper, "run", "--preset", "tiny", "--no-progress",
         "--store", url, "--out", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, timeout=900)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert PASSWORD.encode() not in result.stdout
    assert PASSWORD.encode() not in result.stderr
    assert (tmp_path / "run").is_dir()
    assert _files_holding(tmp_path, PASSWORD.encode()) == []
