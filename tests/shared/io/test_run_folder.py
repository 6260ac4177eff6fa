"""The run-folder rule: refuse another run's folder unless --resume / --overwrite."""

import pytest

from shared.io.run_folder import prepare_run_folder

pytestmark = pytest.mark.no_keras


def test_new_and_empty_folders_are_used(tmp_path):
    new = prepare_run_folder(tmp_path / "a" / "b")
    assert new.is_dir()
    assert prepare_run_folder(new) == new


def test_folder_with_a_run_is_refused_without_a_flag(tmp_path):
    (tmp_path / "protocol.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds another run \(protocol.json\).*--resume.*--overwrite"):
        prepare_run_folder(tmp_path)


def test_resume_keeps_the_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "trial").mkdir()
    prepare_run_folder(tmp_path, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "trial"]


def test_overwrite_clears_the_folder(tmp_path):
    (tmp_path / "claims.json").write_text("{}")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"x")
    prepare_run_folder(tmp_path, overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_run_is_never_cleared(tmp_path):
    (tmp_path / "patient001.nii.gz").write_bytes(b"data")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ValueError, match="not a medrepro run"):
            prepare_run_folder(tmp_path, **flags)
    assert (tmp_path / "patient001.nii.gz").read_bytes() == b"data"


def test_a_file_and_both_flags_are_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        prepare_run_folder(tmp_path / "f")
    with pytest.raises(ValueError, match="exclude each other"):
        prepare_run_folder(tmp_path, resume=True, overwrite=True)
