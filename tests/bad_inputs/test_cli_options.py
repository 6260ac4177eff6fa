"""Bad options, run folders, store URLs, spool records and claims files given to the
command line: each ends in one error line naming the flag (or file, URL) and what was
expected, exit status 2, no traceback, and nothing written into --out."""

import hashlib
import json

import pytest

from shared.io.run_folder import RUN_MARKER
from shared.testing.bad_input import assert_one_line_error, run_cli

pytestmark = pytest.mark.no_keras


def _hashes(folder):
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                         if p.is_file() else "<dir>")
            for p in sorted(folder.rglob("*"))}


# (argv after the command, flag named, expectation named); --out is appended to `run`s.
OPTIONS = [
    (["lge-qa", "run", "--threshold", "nan"], "--threshold", "finite number in (0, 1)"),
    (["lge-qa", "run", "--threshold", "inf"], "--threshold", "finite number"),
    (["lge-qa", "run", "--threshold", "1.5"], "--threshold", "in (0, 1)"),
    (["lge-qa", "run", "--threshold", "0"], "--threshold", "in (0, 1)"),
    (["lge-qa", "run", "--repetitions", "0"], "--repetitions", "whole number >= 1"),
    (["heatmap-loss", "run", "--heatmap-weight", "nan"], "--heatmap-weight", "finite number >= 0"),
    (["heatmap-loss", "run", "--heatmap-weight", "-1"], "--heatmap-weight", ">= 0"),
    (["heatmap-loss", "run", "--models-per-group", "0"], "--models-per-group", ">= 1"),
    (["hrpqct", "run", "--ensemble-size", "0"], "--ensemble-size", "whole number >= 1"),
    (["hrpqct", "run", "--seeds", "-2"], "--seeds", ">= 1"),
    (["hrpqct", "run", "--epochs", "1.5"], "--epochs", "whole number"),
    (["hrpqct", "run", "--workers", "0"], "--workers", "in [1, 256]"),
    (["bar-ad", "run", "--folds", "0"], "--folds", ">= 1"),
    (["bar-ad", "run", "--epochs", "1", "-1"], "--epochs", ">= 0"),
    (["bar-ad", "run", "--seed", "-1"], "--seed", "in [0, 4294967295]"),
    (["bar-ad", "run", "--seed", "99999999999"], "--seed", "in [0, 4294967295]"),
    (["bar-ad", "run", "--seed", "abc"], "--seed", "whole number"),
    (["covidnet-siamese", "run", "--seed", "nan"], "--seed", "whole number"),
    (["bar-ad", "run", "--preset", "tiny", "--set", "sigma=nan"], "--set sigma", "finite number"),
    (["bar-ad", "run", "--preset", "tiny", "--set", "n_folds=Infinity"], "--set n_folds",
     "finite number"),
    (["tune-local", "--workers", "1", "--startup-timeout", "nan"], "--startup-timeout",
     "finite number in (0, 86400]"),
    (["tune-local", "--workers", "1", "--startup-timeout", "-5"], "--startup-timeout", "(0, 86400]"),
    (["tune-local", "--workers", "0"], "--workers", "in [1, 256]"),
    (["tune-local", "--workers", "1", "--port", "70000"], "--port", "in [1, 65535]"),
    (["report", "--experiment", "e", "--metric", "m", "--alpha", "nan"], "--alpha", "(0, 1)"),
    (["report", "--experiment", "e", "--metric", "m", "--alpha", "1"], "--alpha", "(0, 1)"),
    (["tune-demo", "--max-trials", "0"], "--max-trials", ">= 1"),
    (["heatmap-loss", "generate", "--n", "0"], "--n", ">= 1"),
    (["bar-ad", "generate", "--n-ad", "0"], "--n-ad", ">= 1"),
    (["covidnet-siamese", "generate", "--size", "2"], "--size", "in [8, 4096]"),
    (["covidnet-siamese", "generate", "--artefact-strength", "nan"], "--artefact-strength",
     "finite number >= 0"),
    (["lge-qa", "generate", "--n-scored", "0"], "--n-scored", ">= 1"),
    (["hrpqct", "generate", "--seed", "1e3"], "--seed", "whole number"),
]


@pytest.mark.parametrize("argv,flag,expected", OPTIONS,
                         ids=[f"{a[0]}-{a[1]}-{f}={a[-1]}" for a, f, _ in OPTIONS])
def test_a_bad_option_is_refused_at_parse_time(tmp_path, argv, flag, expected):
    out = tmp_path / "out"
    store = tmp_path / "store.sqlite"
    argv = list(argv) + ["--out", out]
    if argv[0] not in ("tune-local", "tune-demo", "report") and argv[1] == "run":
        argv += ["--store", f"sqlite:///{store}", "--no-progress"]
    line = assert_one_line_error(argv, flag, expected)
    assert "got" in line or "Received" in line
    assert not out.exists() and not store.exists()


def test_overwrite_never_clears_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "my_project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "scan.nii.gz").write_bytes(b"\x1f\x8b voxels")
    (folder / "results.csv").write_text("model,acc\na,0.9\n")
    (folder / "config.json").write_text('{"mine": true}')
    (folder / "report.md").write_text("# my notes\n")
    before = _hashes(folder)
    assert_one_line_error(["bar-ad", "run", "--preset", "tiny", "--overwrite", "--out", folder,
                           "--store", f"sqlite:///{tmp_path / 's.sqlite'}", "--no-progress"],
                          str(folder), "not a medrepro run")
    assert _hashes(folder) == before


def test_overwrite_of_a_run_holding_a_users_file_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / RUN_MARKER).write_text("{}")
    (folder / "report.md").write_text("# r\n")
    (folder / "my_table.xlsx").write_bytes(b"PK\x03\x04")
    before = _hashes(folder)
    assert_one_line_error(["bar-ad", "run", "--preset", "tiny", "--overwrite", "--out", folder,
                           "--store", f"sqlite:///{tmp_path / 's.sqlite'}", "--no-progress"],
                          str(folder), "my_table.xlsx", "--overwrite")
    assert _hashes(folder) == before


def test_a_refused_resume_leaves_the_run_byte_identical(tmp_path):
    from shared.study.protocol import canonical_json

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / RUN_MARKER).write_text('{"medrepro_run": 1}')
    (folder / "config.json").write_text('{"paper": "another"}\n')
    (folder / "run_info.json").write_text('{"git_revision": "abc"}\n')
    other = {"paper": "another paper", "arms": ["a", "b"]}
    (folder / "protocol.json").write_text(json.dumps(
        {"protocol": other,
         "sha256": hashlib.sha256(canonical_json(other).encode("utf-8")).hexdigest()}))
    before = _hashes(folder)
    assert_one_line_error(["bar-ad", "run", "--preset", "tiny", "--resume", "--out", folder,
                           "--store", f"sqlite:///{tmp_path / 's.sqlite'}", "--no-progress"],
                          "protocol.json", "sha256", "cannot change")
    assert _hashes(folder) == before


# Store URLs, store commands, spool files and claims files.
def test_an_unsupported_driver_is_refused(tmp_path):
    assert_one_line_error(["store", "info", "--store", "postgresql+pg8000://lab:pw@db/r"],
                          "postgresql+pg8000", "not supported", "postgresql+psycopg2")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_is_refused(url):
    assert_one_line_error(["store", "info", "--store", url], "in-memory", "sqlite:///path")


def test_a_password_holding_an_at_sign_is_never_printed():
    code, out, err = run_cli(["store", "info", "--store",
                              "postgresql://lab:pa55@w0rd@127.0.0.1:9/results"])
    assert code == 2
    assert "pa55" not in out + err and "w0rd" not in out + err, err
    assert "postgresql://lab:***@127.0.0.1:9/results" in err


def test_store_trials_of_an_unknown_experiment(tmp_path):
    from shared.tracking.store import open_store

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    open_store(url).ensure_experiment("heatmap_loss_exp1")
    assert_one_line_error(["store", "trials", "--store", url, "--experiment", "heatmap_los_exp1"],
                          "'heatmap_los_exp1' not found", "heatmap_loss_exp1")


def _spool(tmp_path, lines, newline=True):
    path = tmp_path / "results.spool.jsonl"
    path.write_text("\n".join(lines) + ("\n" if newline else ""))
    return path


_EVAL = {"op": "evaluation", "experiment": "e", "model_id": "m", "metric": "acc", "value": 0.5}
_TRIAL = {"op": "trial", "experiment": "e", "search_name": "s", "trial_id": "1",
          "hyperparameters": {}, "metrics": {"acc": 0.5}}


@pytest.mark.parametrize("last", [
    '{"op": "evaluation", "experiment": "e"',  # cut, but its newline was written
    '[1, 2, 3]',
], ids=["newline-terminated-invalid", "not-an-object"])
def test_a_complete_invalid_last_spool_line_is_reported_and_kept(tmp_path, last):
    path = _spool(tmp_path, [json.dumps(_EVAL), last])
    data = path.read_bytes()
    assert_one_line_error(["store", "sync", "--spool", path, "--remove", "--store",
                           f"sqlite:///{tmp_path / 's.sqlite'}"], str(path), "line 2")
    kept = list(tmp_path.glob("results.spool.jsonl*"))  # as it was, or claimed for a re-sync
    assert kept and all(p.read_bytes() == data for p in kept)


def test_only_a_last_line_without_its_newline_is_a_torn_write(tmp_path):
    path = _spool(tmp_path, [json.dumps(_EVAL), '{"op": "evalu'], newline=False)
    code, out, err = run_cli(["store", "sync", "--spool", path, "--store",
                              f"sqlite:///{tmp_path / 's.sqlite'}"])
    assert code == 0 and "1 record(s) pushed" in out, err


@pytest.mark.parametrize("line,field", [
    ('{"op": "evaluation", "experiment": "e", "model_id": "m", "metric": "acc", "value": NaN}',
     "NaN is not allowed"),
    ('{"op": "evaluation", "experiment": "e", "model_id": "m", "metric": "acc", '
     '"value": Infinity}', "Infinity is not allowed"),
    (json.dumps({**_TRIAL, "started": 1e20}), "started"),
    (json.dumps({**_TRIAL, "ended": -1e300}), "ended"),
], ids=["nan-value", "infinite-value", "started-1e20", "ended-far-past"])
def test_a_bad_number_in_a_spool_record(tmp_path, line, field):
    path = _spool(tmp_path, [line, json.dumps(_EVAL)])
    assert_one_line_error(["store", "sync", "--spool", path, "--store",
                           f"sqlite:///{tmp_path / 's.sqlite'}"], str(path), "line 1", field)


def _claims(tmp_path, text: bytes, name="run"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "claims.json").write_bytes(text)
    return folder


@pytest.mark.parametrize("content,expected", [
    (b'{"schema_version": 1, "paper": "p", "effect": NaN}', "NaN is not allowed"),
    (b'{"schema_version": 1, "paper": "p", "effect": -Infinity}', "-Infinity is not allowed"),
    (b'{"paper": "\xff\xfe"}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
], ids=["nan", "minus-infinity", "not-utf8", "deep-nesting"])
def test_a_bad_claims_file_is_one_line_naming_it(tmp_path, content, expected):
    folder = _claims(tmp_path, content)
    assert_one_line_error(["claims", folder], str(folder / "claims.json"), expected)


def _good_run(folder):
    from shared.study import Hypothesis, Protocol, Study

    units = (0, 1, 2)
    protocol = Protocol(paper="toy", preset="tiny", arms=("new", "old"), pairing_unit="seed",
                        units=units, test_set={"seed": 1, "size": 50},
                        hypotheses=(Hypothesis(id="H1", statement="new beats old",
                                               endpoint="acc", arms=("new", "old"),
                                               direction="greater", sesoi=0.05),))
    study = Study(protocol, folder)
    for unit, diff in zip(units, (0.1, 0.2, 0.3)):
        study.record("new", unit, {"acc": 0.7 + diff})
        study.record("old", unit, {"acc": 0.7})
    study.finish(seed=0)
    return folder


def test_a_bad_claims_file_does_not_hide_a_good_ones_table(tmp_path):
    bad = _claims(tmp_path, b'{"a": NaN}', name="bad")
    unreadable = _claims(tmp_path, b"[" * 100_000, name="unreadable")  # too deep to parse
    good = _good_run(tmp_path / "good")
    code, out, err = run_cli(["claims", bad, unreadable, good])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err
    assert "H1" in out  # the good run's table is printed
    assert len(lines) == 2 and all(line.startswith("medrepro: error:") for line in lines)
    assert str(bad / "claims.json") in lines[0] and str(unreadable / "claims.json") in lines[1]


@pytest.mark.parametrize("error,expected", [
    (MemoryError("cannot allocate 9.2 TB for scan_01.aim"), "more memory"),
    (OverflowError("timestamp out of range for platform time_t"), "OverflowError"),
    (TypeError("field 'dims' of scan_01.aim: expected int, got list"), "TypeError"),
    (AttributeError("'NoneType' object has no attribute 'shape'"), "AttributeError"),
    (ImportError("No module named 'pg8000'"), "expected an installed module"),
], ids=["memory", "overflow", "type", "attribute", "import"])
def test_every_remaining_error_class_is_one_line(monkeypatch, error, expected):
    import shared.cli.tracking

    def fail(args):
        raise error

    monkeypatch.setattr(shared.cli.tracking, "_cmd_store_info", fail)
    assert_one_line_error(["store", "info"], expected, str(error).split()[0])


@pytest.mark.parametrize("paper", ["bar-ad", "lge-qa"])
def test_a_run_refused_for_its_data_leaves_no_half_made_folder(tmp_path, paper):
    out = tmp_path / "run"
    argv = [paper, "run", "--preset", "tiny", "--out", out, "--no-progress",
            "--store", f"sqlite:///{tmp_path / 's.sqlite'}", "--data", tmp_path / "missing"]
    assert_one_line_error(argv, str(tmp_path / "missing"))
    assert not out.exists()  # the corrected command into the same --out is not refused
