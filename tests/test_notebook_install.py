"""Each notebook's first code cell installs the suite from the repository URL set at
its top (the project's `url` in setup.cfg by default) when the `medrepro`
distribution is missing, and asks pip for nothing else (Colab's TensorFlow stays)."""

import configparser
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.no_keras


def _project_url() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["metadata"]["url"]


def _install_cell(path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def _run_cell(source, monkeypatch, *, installed):
    calls = []

    def distribution(name):
        if not installed:
            raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(subprocess, "check_call", lambda args, **kw: calls.append(args))
    exec(compile(source, "<install cell>", "exec"), {})
    return calls


def test_every_notebook_has_one():
    assert len(NOTEBOOKS) == 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_installs_from_the_repository_only_when_missing(path, monkeypatch):
    source = _install_cell(path)
    url = _project_url()
    assert f'MEDREPRO_REPOSITORY = "{url}"' in "\n".join(source.splitlines()[:5])
    assert _run_cell(source, monkeypatch, installed=True) == []
    (call,) = _run_cell(source, monkeypatch, installed=False)
    assert call == [sys.executable, "-m", "pip", "install", "--quiet", f"medrepro @ git+{url}"]


@pytest.mark.parametrize("path", NOTEBOOKS[:1], ids=lambda p: p.stem)
def test_a_local_checkout_can_be_named_instead(path, monkeypatch, tmp_path):
    source = _install_cell(path).replace(f'"{_project_url()}"', repr(str(tmp_path)))
    (call,) = _run_cell(source, monkeypatch, installed=False)
    assert call[-1] == str(tmp_path)
