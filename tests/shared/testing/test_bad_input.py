"""The bad-input checker itself: it must fail on a traceback, a wrong status or a vague line."""

import pytest

from shared.testing import bad_input

pytestmark = pytest.mark.no_keras


def _fake_main(code, stderr_text, exc=None):
    def main(argv):
        import sys

        print(stderr_text, file=sys.stderr, end="")
        if exc is not None:
            raise exc
        return code
    return main


def test_accepts_a_one_line_error_naming_the_file(monkeypatch):
    monkeypatch.setattr("shared.cli.app.main",
                        _fake_main(2, "progress 1/2\nmedrepro: error: scan.aim: bad size\n"))
    assert bad_input.assert_one_line_error(["x"], "scan.aim") == "medrepro: error: scan.aim: bad size"


@pytest.mark.parametrize("code, text", [
    (1, "medrepro: error: scan.aim: bad\n"),                       # wrong status
    (2, "medrepro: error: bad size\n"),                            # file not named
    (2, "Traceback (most recent call last):\nmedrepro: error: scan.aim\n"),
    (2, "medrepro: error: scan.aim\nmore text\n"),                  # not the last line
])
def test_rejects_what_a_user_could_not_act_on(monkeypatch, code, text):
    monkeypatch.setattr("shared.cli.app.main", _fake_main(code, text))
    with pytest.raises(AssertionError):
        bad_input.assert_one_line_error(["x"], "scan.aim")


def test_argparse_exit_is_reported_as_its_status(monkeypatch):
    monkeypatch.setattr("shared.cli.app.main", _fake_main(0, "usage\n", SystemExit(2)))
    assert bad_input.run_cli(["x"])[0] == 2


def test_peak_memory_is_at_least_what_this_process_holds():
    import numpy as np

    from shared.cli.resources import peak_memory_line, peak_memory_mib

    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB touched
    assert peak_memory_mib() >= 64
    assert peak_memory_line().startswith("peak memory: ") and block.sum() > 0
