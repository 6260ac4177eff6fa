import json
import zipfile

import pytest

from shared import cli
from shared.tracking.runs import make_run_dir, to_jsonable
from shared.training.seeding import numpy_rng


def test_help_lists_core_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "demo" in out


def test_demo_rejects_unknown_paper(tmp_path, capsys):
    code = cli.main(["demo", "--out", str(tmp_path), "--papers", "no-such-paper"])
    assert code == 2
    assert "no-such-paper" in capsys.readouterr().err


def test_run_dir_records_config_and_revision(tmp_path):
    out = make_run_dir(tmp_path / "run", {"lr": 1e-3, "path": tmp_path})
    config = json.loads((out / "config.json").read_text())
    info = json.loads((out / "run_info.json").read_text())
    assert config == {"lr": 1e-3, "path": str(tmp_path)}
    assert info["medrepro_version"] and "tensorflow" in info


def test_seed_zero_is_a_seed_and_none_is_refused():
    assert numpy_rng(0).integers(1000) == numpy_rng(0).integers(1000)
    with pytest.raises(ValueError, match="seed=None"):
        numpy_rng(None)


def test_to_jsonable_handles_numpy():
    import numpy as np

    assert to_jsonable({"a": np.float32(1.5), "b": np.arange(2)}) == {"a": 1.5, "b": [0, 1]}


def test_doctor_warns_when_another_distribution_provides_shared():
    from shared.cli.doctor import import_name_warnings

    clash = import_name_warnings(lambda: {"shared": ["medrepro", "shared"], "keras": ["keras"]})
    assert len(clash) == 1 and "also provided by shared" in clash[0]
    assert import_name_warnings(lambda: {"shared": ["medrepro"]}) == []


def test_doctor_prints_no_import_warning_for_this_installation(capsys):
    from shared.cli.doctor import run_doctor

    run_doctor("sqlite:///:memory:")
    out = capsys.readouterr().out
    assert "tensorflow" in out and "warning" not in out


@pytest.mark.parametrize("error,line", [
    (EOFError("Compressed file ended before the end-of-stream marker was reached"),
     "medrepro: error: EOFError: Compressed file ended before the end-of-stream marker was reached"),
    (KeyError("case_id"), "medrepro: error: missing key 'case_id'"),
    (zipfile.BadZipFile("File is not a zip file"),
     "medrepro: error: BadZipFile: File is not a zip file"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
     "medrepro: error: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: "
     "invalid start byte"),
    (PermissionError(13, "Permission denied", "/data/x.png"),
     "medrepro: error: PermissionError: [Errno 13] Permission denied: '/data/x.png'"),
    (ValueError("scores.csv: field 'score'\nexpected a number"),
     "medrepro: error: scores.csv: field 'score' expected a number"),
])
def test_bad_input_errors_are_one_line_with_status_2(monkeypatch, capsys, error, line):
    from shared.cli import app

    def fail(args):
        raise error

    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda: parser)
    parser.set_defaults(func=fail)
    assert app.main([]) == 2
    err = capsys.readouterr().err
    assert err == line + "\n"


def test_debug_variable_adds_the_traceback(monkeypatch, capsys):
    from shared.cli import app

    def fail(args):
        raise EOFError("truncated")

    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda: parser)
    parser.set_defaults(func=fail)
    monkeypatch.setenv("MEDREPRO_DEBUG", "1")
    assert app.main([]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("medrepro: error: EOFError: truncated\n")


def test_store_errors_are_one_line(monkeypatch, capsys):
    import sqlalchemy

    from shared.cli import app

    def fail(args):
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("file is not a database"))

    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda: parser)
    parser.set_defaults(func=fail)
    assert app.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medrepro: error: OperationalError:") and err.count("\n") == 1


@pytest.mark.parametrize("paper", ["heatmap-loss", "covidnet-siamese", "lge-qa", "hrpqct", "bar-ad"])
def test_every_run_refuses_another_runs_folder(tmp_path, paper):
    from shared.testing.bad_input import assert_one_line_error

    from shared.io.run_folder import RUN_MARKER

    (tmp_path / RUN_MARKER).write_text("{}")
    (tmp_path / "claims.json").write_text("{}")
    assert_one_line_error([paper, "run", "--preset", "tiny", "--out", tmp_path],
                          str(tmp_path), "--resume", "--overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_MARKER, "claims.json"]


def test_default_run_folder_holds_the_seed():
    from shared.cli.options import resolve_out_dir

    assert resolve_out_dir(None, "hrpqct", "quick", seed=3).as_posix() == "runs/hrpqct/quick_seed3"
    assert resolve_out_dir("x/y", "hrpqct", "quick", seed=3).as_posix() == "x/y"
