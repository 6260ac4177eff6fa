"""`medrepro demo`: every paper's quick reproduction, one after another."""

import logging
import time
import traceback
from pathlib import Path

from shared.cli import papers as registry
from shared.cli.progress import progress
from shared.cli.quiet import output_to_log
from shared.io.atomic import write_text
from shared.io.run_folder import clear_run_outputs, is_run_output, prepare_run_folder
from shared.report.index_html import claims_files, write_demo_page, write_run_page

log = logging.getLogger(__name__)


def run_demo(out_dir, store_url: str, papers=None, show_progress: bool = True) -> int:
    """Runs each installed paper's `demo` and writes `<out_dir>/index.md` and `index.html`.

    Each paper's run folder gets its own `index.html` (`shared.report.index_html`),
    which the demo's page links to.

    A paper that fails is recorded with its error and the others still run, so
    one failure never loses the results already computed.

    Returns:
        0 when every paper succeeded, 1 otherwise.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    available = registry.paper_modules()
    known = registry.PAPERS
    wanted = list(known) if papers is None else list(papers)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise ValueError(f"Unknown paper(s) {unknown}; expected some of {list(known)}")
    rows = []
    bar = progress(wanted, desc="demo", enabled=show_progress, unit="paper")
    for name in bar:
        bar.set_postfix_str(name)
        module = available.get(name)
        if module is None or not hasattr(module, "demo"):
            rows.append((name, "not installed", None, 0.0))
            continue
        start = time.perf_counter()
        paper_dir = out / name.replace("-", "_")
        try:
            # The demo folder is the demo's own: each demo replaces the previous one
            # (also one that failed before its run marker was written); a file the
            # demo did not write there is never removed.
            if paper_dir.is_dir() and all(is_run_output(p.name) for p in paper_dir.iterdir()):
                clear_run_outputs(paper_dir)
            prepare_run_folder(paper_dir, overwrite=True)
            # Keras, Keras Tuner, TensorFlow and warnings go to the paper's log.txt; the
            # terminal keeps the demo's bar and the paper's own progress bar.
            with output_to_log(paper_dir / "log.txt"):
                report = Path(module.demo(paper_dir, store_url, progress=show_progress))
            seconds = time.perf_counter() - start
            write_run_page(report.parent)
            rows.append((name, "ok", report, seconds))
            bar.write(f"{name}: {paper_verdicts(report.parent) or 'no claims.json'} "
                      f"({seconds / 60:.1f} min)")
        except Exception as err:  # noqa: BLE001 - keep going, report at the end
            (out / f"{name}_error.txt").write_text(traceback.format_exc())
            log.error("%s demo failed: %s (details in %s)", name, err, out / f"{name}_error.txt")
            rows.append((name, f"failed: {err}", None, time.perf_counter() - start))
            bar.write(f"{name}: failed ({err}); see {out / f'{name}_error.txt'}")
    write_index(out / "index.md", rows, store_url)
    write_demo_page(out / "index.html", rows, store_url)
    print(f"Demo index: {out / 'index.html'} ({out / 'index.md'} in Markdown)")
    return 0 if all(status == "ok" for _, status, _, _ in rows) else 1


def paper_verdicts(run_dir: Path) -> str:
    """The verdicts of a paper's run folder (its claims.json, or those one level down)."""
    from shared.study.claims import read_claims, verdict_summary

    files = claims_files(run_dir)
    parts = []
    for path in files:
        try:
            summary = verdict_summary(read_claims(path))
        except (ValueError, FileNotFoundError) as err:
            summary = f"unreadable claims ({err})"
        parts.append(summary if len(files) == 1 else f"{path.parent.name}: {summary}")
    return "; ".join(parts)


def paper_sources(run_dir: Path) -> str:
    """The revision and data source of a paper's run folder, as its claims record them."""
    from shared.study.claims import data_cell, read_claims, revision_cell

    cells = []
    for path in claims_files(run_dir):
        try:
            document = read_claims(path)
        except (ValueError, FileNotFoundError):
            continue
        cell = f"{revision_cell(document)}, {data_cell(document)}"
        if cell not in cells:
            cells.append(cell)
    return "; ".join(cells)


def write_index(path: Path, rows, store_url: str) -> Path:
    from shared.tracking.store import mask_url

    lines = [
        "# medrepro demo",
        "",
        "Each paper's `quick` preset, run end to end on its synthetic data. The quick",
        "designs are small: most verdicts are honestly inconclusive (see each report's",
        "minimum detectable effect); `--preset powered` runs the claim's study.",
        f"Results store: `{mask_url(store_url)}`",
        "",
        "| paper | status | verdicts | minutes | report | revision, data |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for name, status, report, seconds in rows:
        link = f"[{report.name}]({report.relative_to(path.parent).as_posix()})" if report else "-"
        verdicts = (paper_verdicts(report.parent) or "-") if report else "-"
        sources = (paper_sources(report.parent) or "-") if report else "-"
        lines.append(f"| {name} | {status} | {verdicts} | {seconds / 60:.1f} | {link} | "
                     f"{sources} |")
    write_text(path, "\n".join(lines) + "\n")
    return path
