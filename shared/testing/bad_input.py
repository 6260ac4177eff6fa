"""Checks that a bad input gives one line naming the file, and exit status 2.

    code, out, err = run_cli(["lge-qa", "run", "--data", str(root), "--preset", "tiny"])
    assert_one_line_error(["hrpqct", "run", "--data", str(root)], "scan_07.aim", "Mu_Scaling")

`run_cli` calls `shared.cli.main` in this process (no start-up cost per case), with
stdout and stderr captured and `MEDREPRO_DEBUG` unset.
"""

from __future__ import annotations

import contextlib
import io
import os


def run_cli(argv) -> tuple:
    """Runs `medrepro ARGV` in-process; returns (exit status, stdout, stderr)."""
    from shared.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    previous = os.environ.pop("MEDREPRO_DEBUG", None)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exit_:  # argparse
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        if previous is not None:
            os.environ["MEDREPRO_DEBUG"] = previous
    return code, out.getvalue(), err.getvalue()


def tiny_run(command: str, root):
    """Runs `medrepro COMMAND run --preset tiny` in-process into ROOT/run, with its results
    store at ROOT/r.sqlite; asserts exit status 0 and returns the run folder."""
    from pathlib import Path

    out = Path(root) / "run"
    code, printed, err = run_cli([command, "run", "--preset", "tiny", "--out", out, "--no-progress",
                                  "--store", f"sqlite:///{Path(root) / 'r.sqlite'}"])
    assert code == 0, printed + err
    return out


def assert_one_line_error(argv, *names) -> str:
    """Asserts `medrepro ARGV` exits 2 with one error line containing every name.

    Progress bars and warnings may precede it on stderr; the error is the last
    non-empty line, it starts with "medrepro: error:", and no traceback is printed.
    Returns the error line.
    """
    code, out, err = run_cli(argv)
    text = out + err
    assert "Traceback" not in text, f"traceback printed for {argv}:\n{text}"
    assert code == 2, f"exit status {code} (expected 2) for {argv}:\n{text}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, f"nothing on stderr for {argv}"
    line = lines[-1]
    assert line.startswith("medrepro: error:"), f"last stderr line is not the error: {line!r}"
    for name in names:
        assert str(name) in line, f"{name!r} not named in: {line}"
    return line
