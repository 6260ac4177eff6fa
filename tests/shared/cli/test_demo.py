import sys
import types

from shared import cli
from shared.cli import papers


def _fake_paper(name, fail=False):
    module = types.ModuleType(name)

    def register(subparsers):
        subparsers.add_parser(name.replace("_", "-"))

    def demo(out_dir, store_url, progress=True):
        if fail:
            raise RuntimeError("synthetic failure")
        out_dir.mkdir(parents=True, exist_ok=True)
        report = out_dir / "report.md"
        report.write_text(f"# {name}\n")
        return report

    module.register, module.demo = register, demo
    return module


def test_demo_runs_every_paper_and_survives_a_failure(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_ok.cli", _fake_paper("fake_ok"))
    monkeypatch.setitem(sys.modules, "fake_bad.cli", _fake_paper("fake_bad", fail=True))
    monkeypatch.setattr(papers, "PAPERS", {"fake-ok": "fake_ok.cli", "fake-bad": "fake_bad.cli"})

    code = cli.main(["demo", "--out", str(tmp_path), "--no-progress",
                     "--store", f"sqlite:///{tmp_path}/r.sqlite"])

    assert code == 1  # one paper failed
    index = (tmp_path / "index.md").read_text()
    assert "| fake-ok | ok |" in index
    assert "[report.md](fake_ok/report.md)" in index
    assert "| fake-bad | failed: synthetic failure |" in index
    assert "synthetic failure" in (tmp_path / "fake-bad_error.txt").read_text()
    assert (tmp_path / "fake_ok" / "report.md").exists()
    # The browsable pages beside it (tests/shared/report/test_index_html.py parses them).
    assert 'href="fake_ok/index.html"' in (tmp_path / "index.html").read_text()
    assert (tmp_path / "fake_ok" / "index.html").is_file()


def test_demo_index_shows_verdicts_and_no_store_password(tmp_path):
    from shared.study.claims import build_claims, write_claims

    def demo(out_dir, store_url, progress=True):
        out_dir.mkdir(parents=True, exist_ok=True)
        claim = {"id": "H1", "statement": "s", "endpoint": "acc", "arms": ["a", "b"],
                 "direction": "greater", "paired": True, "n": 5, "effect": 0.1,
                 "ci95": [0.0, 0.2], "test": "wilcoxon", "p": 0.06, "p_holm": 0.06,
                 "mde": 0.15, "sesoi": 0.05, "trivial": None, "paper_value": None,
                 "verdict": "inconclusive"}
        write_claims(out_dir, build_claims(paper="fake", preset="quick", seed=0, revision="",
                                           protocol_sha256="0" * 64, deviations=[], gates=[],
                                           claims=[claim]))
        (out_dir / "report.md").write_text("# fake\n")
        return out_dir / "report.md"

    from shared.cli.demo import write_index

    index = write_index(tmp_path / "index.md",
                        [("fake-ok", "ok", demo(tmp_path / "fake_ok", ""), 60.0)],
                        "postgresql://user:s3cret@db.example/lab").read_text()
    assert "| fake-ok | ok | H1 inconclusive | 1.0 |" in index
    assert index.splitlines()[-1].endswith("| -, not recorded |")  # no revision, no data block
    assert "s3cret" not in index and "user:***@db.example" in index
