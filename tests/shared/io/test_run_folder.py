"""The run-folder rule: a folder is a run only by its marker; --overwrite clears only what
a run wrote; a command that fails before training leaves the folder as it found it."""

import hashlib

import pytest

from shared.io.run_folder import (RUN_MARKER, finish_run_folders, open_run_folder,
                                  prepare_run_folder, run_folder_started)
from shared.tracking.runs import make_run_dir

pytestmark = pytest.mark.no_keras


def _hashes(folder):
    """Relative path -> SHA-256 of every file (and '<dir>' for every folder) under it."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                         if p.is_file() else "<dir>")
            for p in sorted(folder.rglob("*"))}


def _run(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_MARKER).write_text('{"medrepro_run": 1}')
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_new_and_empty_folders_are_used(tmp_path):
    new = prepare_run_folder(tmp_path / "a" / "b")
    assert new.is_dir()
    assert prepare_run_folder(new) == new


def test_folder_with_a_run_is_refused_without_a_flag(tmp_path):
    _run(tmp_path, **{"protocol.json": "{}"})
    with pytest.raises(ValueError, match=r"holds another run.*--resume.*--overwrite"):
        prepare_run_folder(tmp_path)


def test_resume_keeps_the_folder(tmp_path):
    _run(tmp_path, **{"config.json": "{}"})
    (tmp_path / "tuner").mkdir()
    prepare_run_folder(tmp_path, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_MARKER, "config.json", "tuner"]


def test_overwrite_clears_a_runs_outputs(tmp_path):
    _run(tmp_path, **{"claims.json": "{}"})
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"x")
    prepare_run_folder(tmp_path, overwrite=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("files", [
    {"config.json": "{}", "results.csv": "id,acc\n1,0.9\n", "data/scan.nii.gz": "voxels"},
    {"report.md": "# my notes"},
    {"patient001.nii.gz": "data"},
], ids=["config-and-user-data", "report-only", "data-only"])
@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}],
                         ids=["none", "overwrite", "resume"])
def test_a_folder_without_the_marker_is_never_cleared(tmp_path, files, flags):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    before = _hashes(tmp_path)
    with pytest.raises(ValueError, match="not a medrepro run"):
        open_run_folder(tmp_path, **flags)
    finish_run_folders(ok=False)
    assert _hashes(tmp_path) == before


def test_overwrite_of_a_run_holding_user_files_is_refused(tmp_path):
    _run(tmp_path, **{"report.md": "# r", "my_table.csv": "a,b\n"})
    before = _hashes(tmp_path)
    with pytest.raises(ValueError, match=r"files no run writes \(my_table.csv\)"):
        open_run_folder(tmp_path, overwrite=True)
    assert _hashes(tmp_path) == before


def test_a_file_and_both_flags_are_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        prepare_run_folder(tmp_path / "f")
    with pytest.raises(ValueError, match="exclude each other"):
        prepare_run_folder(tmp_path, resume=True, overwrite=True)


def test_make_run_dir_writes_the_marker_once(tmp_path):
    out = make_run_dir(tmp_path / "run", {"lr": 0.1})
    marker = (out / RUN_MARKER).read_bytes()
    make_run_dir(out, {"lr": 0.1})
    assert (out / RUN_MARKER).read_bytes() == marker
    open_run_folder(out, resume=True)
    finish_run_folders(ok=True)


def test_a_refused_new_run_leaves_no_folder(tmp_path):
    out = open_run_folder(tmp_path / "new")
    make_run_dir(out, {"lr": 0.1})
    (out / "protocol.json").write_text("{}")
    finish_run_folders(ok=False)  # refused before training
    assert not (tmp_path / "new").exists()
    open_run_folder(tmp_path / "new")  # the corrected command is not refused
    finish_run_folders(ok=True)


def test_a_refused_resume_leaves_the_folder_byte_identical(tmp_path):
    out = make_run_dir(tmp_path / "run", {"lr": 0.1})
    (out / "protocol.json").write_text('{"a": 1}')
    (out / "tuner").mkdir()
    (out / "tuner" / "trial.json").write_text("{}")
    before = _hashes(out)
    open_run_folder(out, resume=True)
    make_run_dir(out, {"lr": 0.5, "seed": 1})  # rewrites config.json and run_info.json
    (out / "samples.png").write_bytes(b"new")
    finish_run_folders(ok=False)  # e.g. the protocol check refused it
    assert _hashes(out) == before


def test_a_refused_overwrite_puts_the_old_run_back(tmp_path):
    out = make_run_dir(tmp_path / "run", {"lr": 0.1})
    (out / "figures").mkdir()
    (out / "figures" / "a.png").write_bytes(b"png")
    before = _hashes(out)
    open_run_folder(out, overwrite=True)
    make_run_dir(out, {"lr": 0.5})
    finish_run_folders(ok=False)
    assert _hashes(out) == before


def test_a_started_overwrite_removes_the_old_run(tmp_path):
    out = make_run_dir(tmp_path / "run", {"lr": 0.1})
    (out / "figures").mkdir()
    open_run_folder(out, overwrite=True)
    make_run_dir(out, {"lr": 0.5})
    run_folder_started(out)
    finish_run_folders(ok=False)  # a failure during training keeps what the run wrote
    assert sorted(p.name for p in out.iterdir()) == [RUN_MARKER, "config.json", "run_info.json"]
