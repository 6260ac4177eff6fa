"""`index.html`: the page a person opens first, for a run folder and for the demo.

    write_run_page(run_dir)                     # <run_dir>/index.html
    write_demo_page(out / "index.html", rows, store_url)

A run's page shows what its `claims.json` records (paper, preset, seed, revision, data),
the claims table with each verdict and each claim's statement, note and reasons, links to
its reports (`report.md`, and each sub-report's `report.html` / `report.md`), and every
figure it wrote: PNGs at the top of the folder, under `figures/`, and under `figures/`
of each sub-report (a child folder holding a report). The demo's page lists every
paper's run with its verdicts and links to that run's page and report.

Figures are referenced by relative `src`, not embedded as data: URIs. The page indexes
a run folder and links to the reports in it, so it is read with its folder in any case;
embedding would store every figure twice and make five demo pages megabytes each for
nothing. The single-file artefact for mailing stays each comparison's `report.html`
(`shared.report.comparison`). The pages are self-contained in the sense that matters
offline: plain HTML with inline CSS, no script, no network resource, every text escaped,
and ASCII only (other characters as references), whatever the locale's encoding.
"""

from __future__ import annotations

import html
import logging
import os
import re
from pathlib import Path
from urllib.parse import quote

from shared.io.atomic import write_text
from shared.report.comparison import _CSS
from shared.study.claims import (CLAIM_COLUMNS, claim_cells, data_cell, read_claims,
                                 revision_cell)

log = logging.getLogger(__name__)

INDEX_FILE = "index.html"
REPORT_FILES = ("report.html", "report.md")

_PAGE_CSS = _CSS + (
    ".verdict{font-weight:600;padding:1px 6px;border-radius:3px;white-space:nowrap}"
    ".reproduced{background:#d9f2d9}.contradicted{background:#f8d7d7}"
    ".inconclusive{background:#fff1c2}.untestable{background:#e4e4e4}"
    "figure{margin:1.5em 0}figcaption{color:#555;font-size:90%}")


def claims_files(run_dir) -> list:
    """A run folder's `claims.json`, or those one level down."""
    run_dir = Path(run_dir)
    return [run_dir / "claims.json"] if (run_dir / "claims.json").is_file() \
        else sorted(run_dir.glob("*/claims.json"))


def _sub_reports(run_dir: Path) -> list:
    """The child folders holding a report of their own (comparisons, statistics)."""
    if not run_dir.is_dir():
        return []
    return [child for child in sorted(run_dir.iterdir()) if child.is_dir()
            and any((child / name).is_file() for name in REPORT_FILES)]


def run_reports(run_dir) -> list:
    """The reports of a run folder: its own, then each sub-report's."""
    run_dir = Path(run_dir)
    return [folder / name for folder in [run_dir] + _sub_reports(run_dir)
            for name in REPORT_FILES if (folder / name).is_file()]


def run_figures(run_dir) -> dict:
    """Every figure a run wrote, by section: {"": the run's own, sub-report folder: its}.

    Data folders (synthetic images, tuner trials) hold no report and are never listed."""
    run_dir = Path(run_dir)
    sections = {"": sorted(run_dir.glob("*.png")) + sorted(run_dir.glob("figures/**/*.png"))}
    for child in _sub_reports(run_dir):
        sections[child.name] = sorted(child.glob("*.png")) + sorted(child.glob("figures/**/*.png"))
    return {name: paths for name, paths in sections.items() if paths}


def _text(value) -> str:
    return html.escape(str(value))


def _markdown_cell(text: str) -> str:
    """A cell the claims module writes for Markdown (`code`, **bold**), as HTML."""
    text = _text(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _href(path: Path, base: Path) -> str:
    """A relative URL to `path`, percent-encoded (a name may hold `#`, `?` or spaces)."""
    return html.escape(quote(Path(os.path.relpath(path, base)).as_posix()), quote=True)


def _verdict(claim, *, with_id: bool = True) -> str:
    verdict = _text(claim["verdict"])
    label = f"{_text(claim['id'])} {verdict}" if with_id else verdict
    return f'<span class="verdict {verdict}">{label}</span>'


def _page(title: str, body: list) -> str:
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_text(title)}</title><style>{_PAGE_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _claims_section(document, heading: str) -> list:
    body = [f"<h2>{_text(heading)}</h2>",
            f"<p>Paper <strong>{_text(document['paper'])}</strong>, preset "
            f"<code>{_text(document['preset'])}</code>, seed {_text(document['seed'])}, "
            f"revision {_markdown_cell(revision_cell(document))}, data: "
            f"{_markdown_cell(data_cell(document))}, protocol "
            f"<code>{_text(document['protocol_sha256'][:12])}</code>.</p>",
            "<table><tr>" + "".join(f"<th>{_text(c)}</th>" for c in CLAIM_COLUMNS) + "</tr>"]
    for claim in document["claims"]:
        cells = [_markdown_cell(cell) for cell in claim_cells(claim)[:-1]]
        cells.append(_verdict(claim, with_id=False))
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    body.append("</table>\n<ul>")
    for claim in document["claims"]:
        why = [claim["note"]] if claim.get("note") else []
        why += claim.get("untestable_because") or []
        body.append(f"<li>{_verdict(claim)} {_text(claim['statement'])}"
                    + "".join(f"<br><em>{_text(reason)}</em>" for reason in why) + "</li>")
    body.append("</ul>")
    return body


def run_page(run_dir) -> str:
    """The HTML page of one run folder (see the module docstring)."""
    run_dir = Path(run_dir)
    title, body = run_dir.name, []
    for path in claims_files(run_dir):
        heading = "Claims" if path.parent == run_dir else f"Claims: {path.parent.name}"
        try:
            document = read_claims(path)
        except (ValueError, FileNotFoundError) as err:
            body += [f"<h2>{_text(heading)}</h2>", f"<p>Unreadable claims: {_text(err)}</p>"]
            continue
        if title == run_dir.name:
            title = f"{document['paper']}, preset {document['preset']}, seed {document['seed']}"
        body += _claims_section(document, heading)
    if not body:
        body.append("<p>No <code>claims.json</code> in this run folder.</p>")
    reports = run_reports(run_dir)
    if reports:
        body += ["<h2>Reports</h2>", "<ul>"] + [
            f'<li><a href="{_href(p, run_dir)}">{_text(p.relative_to(run_dir).as_posix())}'
            f"</a></li>" for p in reports] + ["</ul>"]
    body += _models_and_logs_section(run_dir)
    for section, paths in run_figures(run_dir).items():
        body.append(f"<h2>Figures{_text(': ' + section) if section else ''}</h2>")
        for path in paths:
            name = path.relative_to(run_dir).as_posix()
            body.append(f'<figure><img src="{_href(path, run_dir)}" alt="{_text(name)}">'
                        f"<figcaption>{_text(name)}</figcaption></figure>")
    return _page(title, [f"<h1>{_text(title)}</h1>"] + body)


def _models_and_logs_section(run_dir: Path) -> list:
    """Links to the run's model bundles (their metadata.json) and its TensorBoard command."""
    from shared.io.bundle import METADATA_FILE, bundle_folders
    from shared.training.tensorboard import TENSORBOARD_DIR

    bundles = bundle_folders(run_dir)
    logs = (run_dir / TENSORBOARD_DIR).is_dir()
    if not bundles and not logs:
        return []
    items = [f'<li>model bundle <a href="{_href(b / METADATA_FILE, run_dir)}">'
             f"{_text(b.relative_to(run_dir).as_posix())}</a></li>" for b in bundles]
    if logs:
        items.append(f"<li>TensorBoard logs: <code>tensorboard --logdir "
                     f"{_text(TENSORBOARD_DIR)}</code> in this folder (or <code>medrepro "
                     f"tensorboard RUN_DIR</code>)</li>")
    return ["<h2>Saved models and logs</h2>", "<ul>"] + items + ["</ul>"]


def write_run_page(run_dir) -> Path:
    """Writes `<run_dir>/index.html` (atomically); returns its path."""
    return write_text(Path(run_dir) / INDEX_FILE, run_page(run_dir))


def write_run_pages(folders) -> list:
    """Writes the page of each folder that holds a report or claims; returns the paths.

    A page that cannot be written is a warning: the run it describes has finished."""
    written = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        if not (claims_files(folder) or run_reports(folder)):
            continue
        try:
            written.append(write_run_page(folder))
        except OSError as err:
            log.warning("could not write %s: %s", folder / INDEX_FILE, err)
    return written


def demo_page(path, rows, store_url: str) -> str:
    """The demo's page: one row per paper with its verdicts and links to its run.

    Args:
        path: str or Path. Where the page is written; links are relative to its folder.
        rows: iterable of (paper, status, report path or None, seconds), as `run_demo`
            collects them.
        store_url: str. The results store (its password masked on the page).
    """
    from shared.tracking.store import mask_url

    base = Path(path).parent
    body = ["<h1>medrepro demo</h1>",
            "<p>Each paper's <code>quick</code> preset, run end to end on its synthetic data. "
            "The quick designs are small: most verdicts are honestly inconclusive (see each "
            "report's minimum detectable effect); <code>--preset powered</code> runs the "
            "claim's study.</p>",
            f"<p>Results store: <code>{_text(mask_url(store_url))}</code></p>",
            "<table><tr><th>paper</th><th>status</th><th>verdicts</th><th>minutes</th>"
            "<th>run</th><th>revision, data</th></tr>"]
    for name, status, report, seconds in rows:
        verdicts, sources, links = [], [], "-"
        if report is not None:
            run_dir = Path(report).parent
            for claims_path in claims_files(run_dir):
                try:
                    document = read_claims(claims_path)
                except (ValueError, FileNotFoundError) as err:
                    verdicts.append(f"unreadable claims ({_text(err)})")
                    continue
                verdicts.append(" ".join(_verdict(c) for c in document["claims"]))
                source = (f"{_markdown_cell(revision_cell(document))}, "
                          f"{_markdown_cell(data_cell(document))}")
                if source not in sources:
                    sources.append(source)
            page = run_dir / INDEX_FILE
            links = " ".join(f'<a href="{_href(p, base)}">{_text(label)}</a>'
                             for label, p in (("page", page), (Path(report).name, Path(report)))
                             if p.is_file())
        body.append(f"<tr><td>{_text(name)}</td><td>{_text(status)}</td>"
                    f"<td>{'<br>'.join(verdicts) or '-'}</td><td>{seconds / 60:.1f}</td>"
                    f"<td>{links or '-'}</td><td>{'; '.join(sources) or '-'}</td></tr>")
    body.append("</table>")
    return _page("medrepro demo", body)


def write_demo_page(path, rows, store_url: str) -> Path:
    """Writes the demo's page to `path` (atomically); returns the path."""
    return write_text(path, demo_page(path, rows, store_url))
