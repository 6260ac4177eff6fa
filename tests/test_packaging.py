"""`pip install .` builds a wheel that carries every file the packages read at run
time (the claims schema, the papers' READMEs), and the installed copy finds them."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "covidnet_siamese", "heatmap_loss", "lge_qa", "hrpqct", "bar_ad")
SKIPPED = {".venv", "runs", "build", "dist", ".git", "__pycache__", ".pytest_cache"}


def _package_files(root: Path) -> set:
    """Files under the packages that belong in a wheel (code and data, not figures)."""
    found = set()
    for package in PACKAGES:
        for path in (root / package).rglob("*"):
            parts = set(path.relative_to(root).parts)
            if path.is_file() and not parts & SKIPPED and path.suffix not in (".pyc", ".png") \
                    and "figures" not in parts:
                found.add(path.relative_to(root).as_posix())
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("setuptools")
    source = tmp_path_factory.mktemp("source") / "medrepro"
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names if n in SKIPPED or n.endswith(".egg-info")])
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                             "--no-build-isolation", "--quiet", "-w", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = out.glob("medrepro-*.whl")
    return path, _package_files(source)


@pytest.mark.no_keras
def test_wheel_holds_every_package_file(wheel):
    path, expected = wheel
    names = set(zipfile.ZipFile(path).namelist())
    assert "shared/study/claims.schema.json" in expected
    assert {f"{p}/README.md" for p in PACKAGES if p != "shared"} <= expected
    assert sorted(expected - names) == []


@pytest.mark.no_keras
def test_installed_wheel_reads_its_schema(wheel, tmp_path):
    path, _ = wheel
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--target", str(target), str(path)], check=True, timeout=300)
    code = ("import json, shared.study.claims as c; "
            "print(c.__file__); print(json.loads(c.SCHEMA_PATH.read_text())['type'])")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    module_file, schema_type = result.stdout.split()
    assert Path(module_file).is_relative_to(target)
    assert schema_type == "object"
