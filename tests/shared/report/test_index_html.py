"""index.html of a run folder and of the demo: parsed back, every image and link found."""

import base64
import sys
import types
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from shared import cli
from shared.cli import papers
from shared.report.index_html import (run_figures, write_demo_page, write_run_page,
                                      write_run_pages)
from shared.study.claims import build_claims, write_claims

pytestmark = pytest.mark.no_keras

# A 1 x 1 PNG, written by hand so the test needs no image library.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
                       "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
VERDICTS = ("reproduced", "contradicted", "inconclusive", "untestable")


class _Page(HTMLParser):
    """The images, links and text of a page, as a browser reads them (entities decoded)."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.images, self.links, self.text = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)


def _claim(claim_id, verdict, **extra):
    return {"id": claim_id, "statement": f"{claim_id}: a < b & c > d", "endpoint": "acc",
            "arms": ["new", "old"], "direction": "greater", "paired": True, "n": 5,
            "effect": 0.1, "ci95": [0.0, 0.2], "test": "wilcoxon", "p": 0.06, "p_holm": 0.06,
            "mde": 0.15, "sesoi": 0.05, "trivial": None, "paper_value": None,
            "verdict": verdict, **extra}


def _run_folder(folder, paper="toy", verdicts=VERDICTS):
    """A run folder as the papers write one: claims, report, figures, a sub-report, data."""
    claims = [_claim(f"H{k}", v) for k, v in enumerate(verdicts, start=1)]
    claims[-1]["note"] = "too few units: <script>alert(1)</script>"
    if claims[-1]["verdict"] == "untestable":
        claims[-1]["untestable_because"] = ["gate failed: signal_auc < 0.7"]
    write_claims(folder, build_claims(paper=paper, preset="quick", seed=3, revision="abc123",
                                      protocol_sha256="0" * 64, deviations=[], gates=[],
                                      claims=claims))
    (folder / "report.md").write_text(f"# {paper}\n")
    for name in ("figures/loss & acc #1.png", "stats/figures/box.png", "data/img-0001.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(PNG)
    (folder / "stats" / "report.html").write_text("<html></html>")
    return folder


def _resolved(page_path, urls):
    return {(page_path.parent / unquote(url)).resolve() for url in urls}


def test_run_page_shows_every_verdict_and_every_figure_it_references(tmp_path):
    run = _run_folder(tmp_path / "run")
    page_path = write_run_page(run)
    text = page_path.read_text(encoding="ascii")
    page = _Page(text)

    assert _resolved(page_path, page.images) == {(run / "figures/loss & acc #1.png").resolve(),
                                                 (run / "stats/figures/box.png").resolve()}
    assert all(p.is_file() and p.read_bytes()[:8] == PNG[:8]
               for p in _resolved(page_path, page.images))
    assert _resolved(page_path, page.links) == {(run / "report.md").resolve(),
                                                (run / "stats/report.html").resolve()}
    words = " ".join(page.text)
    assert all(verdict in words for verdict in VERDICTS)
    assert "gate failed: signal_auc < 0.7" in words and "toy, preset quick, seed 3" in words
    # Text is escaped: the statement reads back as written, the note's tag is never a tag.
    assert "H1: a < b & c > d" in words and "a &lt; b &amp; c &gt; d" in text
    assert "<script" not in text and "<alert" not in text
    assert "http://" not in text and "https://" not in text


def test_data_folders_are_not_figures_and_a_bad_claims_file_still_gives_a_page(tmp_path):
    run = _run_folder(tmp_path / "run")
    assert [p.name for p in run_figures(run)[""]] == ["loss & acc #1.png"]
    assert "data" not in run_figures(run)
    (run / "claims.json").write_text("{not json")
    words = " ".join(_Page(write_run_page(run).read_text()).text)
    assert "Unreadable claims" in words and "not valid JSON" in words


def test_demo_page_lists_each_run_with_its_verdicts_and_links(tmp_path):
    runs = [_run_folder(tmp_path / "toy_a", "toy-a", ("reproduced", "inconclusive")),
            _run_folder(tmp_path / "toy_b", "toy-b", ("untestable",))]
    for run in runs:
        write_run_page(run)
    rows = [("toy-a", "ok", runs[0] / "report.md", 60.0),
            ("toy-b", "ok", runs[1] / "report.md", 30.0),
            ("toy-c", "failed: <boom>", None, 1.0)]
    page_path = write_demo_page(tmp_path / "index.html", rows,
                                "postgresql://user:s3cret@db.example/lab")
    text = page_path.read_text(encoding="ascii")
    page = _Page(text)

    assert _resolved(page_path, page.links) == {(run / name).resolve() for run in runs
                                                for name in ("index.html", "report.md")}
    words = " ".join(page.text)
    assert "H1 reproduced" in words and "H2 inconclusive" in words and "H1 untestable" in words
    assert "failed: <boom>" in words and "&lt;boom&gt;" in text
    assert "s3cret" not in text and "user:***@db.example" in words
    assert "http://" not in text and "https://" not in text and not page.images


def _fake_paper(fail_after_start):
    """A paper whose `run` opens its folder the way the papers' commands do."""
    from shared.io.run_folder import open_run_folder, run_folder_started

    def run(args):
        out = open_run_folder(args.out)
        out.mkdir(parents=True)
        run_folder_started(out)
        _run_folder(out)
        if fail_after_start:
            raise ValueError("diverged")
        return 0

    def register(subparsers):
        parser = subparsers.add_parser("fake-paper")
        parser.add_argument("--out", type=Path)
        parser.set_defaults(func=run)

    module = types.ModuleType("fake_paper.cli")
    module.register = register
    return module


@pytest.mark.parametrize("fail", [False, True])
def test_a_run_command_that_succeeds_writes_its_page_at_the_end(tmp_path, monkeypatch, fail):
    monkeypatch.setitem(sys.modules, "fake_paper.cli", _fake_paper(fail))
    monkeypatch.setattr(papers, "PAPERS", {"fake-paper": "fake_paper.cli"})

    code = cli.main(["fake-paper", "--out", str(tmp_path / "run")])

    assert code == (2 if fail else 0)
    assert (tmp_path / "run" / "index.html").is_file() is not fail
    assert write_run_pages([tmp_path / "elsewhere"]) == []  # no report, no claims: no page
