"""Comparison reports: Markdown, a self-contained HTML page and JSON, with figures.

`write_comparison_report` compares groups of metric values with
`shared.stats.compare_groups` and writes into one folder:

* `report.json`: the values of every group and every number of the comparison;
* `report.md`: every test, p-value and effect size, the decision path in words, and
  the figures;
* `report.html`: the same page with the figures embedded (base64 PNG), so it can be
  mailed or archived as one file;
* `figures/<metric>_box_strip.png` (box plot + every value of each group) and
  `figures/<metric>_histograms.png`.

`report_from_store` collects the values from the results store: the evaluations of
one experiment and metric, grouped and filtered by `shared.report.selection`; with
`pair_by` the values are matched unit by unit and compared with paired tests
(`shared.report.paired`).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np

from shared.io.atomic import save_figure, write_text
from shared.tracking.runs import to_jsonable
from shared.report.selection import select_values
from shared.stats import TEST_NAMES, compare_groups


def _figures(groups, metric, fig_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    names = list(groups)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", metric)
    paths = {}

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 4))
    ax.boxplot([groups[n] for n in names], showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1), names)
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    for i, name in enumerate(names, start=1):
        values = np.asarray(groups[name])
        ax.scatter(i + rng.uniform(-0.12, 0.12, values.size), values, s=18, alpha=0.7,
                   zorder=3)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per group (box + every model)")
    fig.tight_layout()
    paths["box_strip"] = fig_dir / f"{safe}_box_strip.png"
    save_figure(fig, paths["box_strip"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False,
                             sharex=True)
    all_values = np.concatenate([np.asarray(v, dtype=float) for v in groups.values()])
    low, high = float(all_values.min()), float(all_values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 11)
    for ax, name in zip(axes[0], names):
        ax.hist(groups[name], bins=bins, color="tab:blue", alpha=0.8, edgecolor="white")
        ax.set_title(f"{name} (n={len(groups[name])})")
        ax.set_xlabel(metric)
    axes[0][0].set_ylabel("models")
    fig.tight_layout()
    paths["histograms"] = fig_dir / f"{safe}_histograms.png"
    save_figure(fig, paths["histograms"], dpi=110)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- writing
def _p(p):
    if p is None:
        return "-"
    return f"{p:.4g}" if p >= 1e-4 else f"{p:.2e}"


def _n(x, digits=4):
    return "-" if x is None else f"{x:.{digits}g}"


def _markdown_tables(result, metric):
    lines = ["## Groups", "",
             "| group | n | mean | SD | median | IQR | min | max | Shapiro-Wilk W | p | normal |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, g in result["groups"].items():
        sw = g["shapiro"]
        lines.append(f"| {name} | {g['n']} | {_n(g['mean'])} | {_n(g['sd'])} | "
                     f"{_n(g['median'])} | {_n(g['iqr'])} | {_n(g['min'])} | {_n(g['max'])} | "
                     f"{_n(sw['W'])} | {_p(sw['p_value'])} | "
                     f"{'yes' if sw['normal'] else 'no'} |")
    test = result["test"]
    lines += ["", "## Test", "",
              f"{TEST_NAMES[test['test']]}: statistic = {_n(test['statistic'])}"
              + (f", df = {_n(test['df'])}" if test.get("df") is not None else "")
              + f", p = {_p(test['p_value'])} (alpha = {result['alpha']:g}): "
              + ("**significant**" if test["significant"] else "not significant") + ".", ""]
    ks = [f"{k:g}" for k in result["iqr_filters"]]
    header = ("| comparison | test | statistic | p | Holm p | significant | Cohen's d | "
              "CLES | " + " | ".join(f"d (±{k} IQR) [removed]" for k in ks) + " |")
    lines += ["## Pairwise comparisons and effect sizes", "", header,
              "|" + "---|" * (8 + len(ks))]
    for c in result["comparisons"]:
        iqr_cells = []
        for k in ks:
            v = c["cohens_d_iqr"].get(k)
            iqr_cells.append("-" if v is None else
                             f"{_n(v['cohens_d'])} [{sum(v['removed'].values())}]")
        lines.append(f"| {c['a']} vs {c['b']} | {TEST_NAMES[c['test']]} | "
                     f"{_n(c['statistic'])} | {_p(c['p_value'])} | {_p(c['p_holm'])} | "
                     f"{'yes' if c['significant'] else 'no'} | {_n(c['cohens_d'])} "
                     f"({c['cohens_d_label']}) | {c['cles']:.3f} | " + " | ".join(iqr_cells)
                     + " |")
    pw = result["power"]
    lines += ["", "## Power analysis", "",
              (f"Models per group needed to detect |d| = {abs(pw['effect_size']):.3g} "
               f"({pw['comparison']}) with power "
               f"{pw['power']:g} at alpha {pw['alpha']:g}: **{pw['n_per_group']}** (smallest "
               f"group: {pw['n_smallest_group']}, achieved power {_n(pw['achieved_power'], 3)})."
               if pw["n_per_group"] is not None else
               "The observed effect is zero or undefined; no sample size applies."), ""]
    lines += ["## Decision path", ""] + [f"{i}. {s}" for i, s in
                                         enumerate(result["decision"], start=1)] + [""]
    return lines


def _markdown_to_html(markdown_text, images):
    """A small converter for the Markdown this module writes (headings, tables, lists)."""
    out, in_table, in_list = [], False, False

    def inline(text):
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        return text

    for line in markdown_text.splitlines():
        image = re.fullmatch(r"!\[(.*?)\]\((.+?)\)", line.strip())
        if in_table and not line.startswith("|"):
            out.append("</table>")
            in_table = False
        if in_list and not re.match(r"\d+\. ", line):
            out.append("</ol>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(set(c) <= set("-:") for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
        elif re.match(r"\d+\. ", line):
            if not in_list:
                out.append("<ol>")
                in_list = True
            out.append(f"<li>{inline(line.split('. ', 1)[1])}</li>")
        elif image:
            data = images.get(image.group(2))
            src = f"data:image/png;base64,{data}" if data else html.escape(image.group(2))
            out.append(f'<p><img alt="{html.escape(image.group(1))}" src="{src}"></p>')
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_table:
        out.append("</table>")
    if in_list:
        out.append("</ol>")
    return "\n".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
        "img{max-width:100%}code{background:#f3f3f3;padding:0 3px}")


def write_comparison_report(groups, *, metric, out_dir, title, description="", extra_markdown="",
                            alpha=0.05, equal_var=False, iqr_filters=(1.5, 5.0),
                            provenance=None):
    """Compares groups of a metric and writes report.md, report.html, report.json, figures.

    Args:
        groups: dict group name -> sequence of floats (one value per model).
        metric: str. Name of the metric (axis labels, file names).
        out_dir: str or Path. Folder written (created when missing).
        title: str. Heading of the report.
        description: str. Paragraph shown under the title.
        extra_markdown: str. Appended to the Markdown (and the HTML) as it is.
        alpha, equal_var, iqr_filters: passed to `shared.stats.compare_groups`.
        provenance: dict, optional. Where the values came from (store, experiment,
            filter); written to the JSON and the Markdown.

    Returns:
        Path of report.md.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = {str(k): [float(x) for x in v] for k, v in groups.items()}
    result = compare_groups(values, alpha=alpha, equal_var=equal_var, iqr_filters=iqr_filters)
    fig_paths = _figures(values, metric, out / "figures")
    rel = {k: p.relative_to(out).as_posix() for k, p in fig_paths.items()}

    from shared.tracking.store import mask_url, run_environment

    env = run_environment()
    # A store URL handed in as provenance must not leak its password into the report.
    provenance = {k: mask_url(v) if isinstance(v, str) and "://" in v else v
                  for k, v in (provenance or {}).items()}
    payload = {"title": title, "metric": metric, "values": values, "comparison": result,
               "figures": rel, "provenance": provenance or {},
               "environment": {k: env.get(k) for k in ("medrepro_version", "git_revision",
                                                       "created")}}
    write_text(out / "report.json", json.dumps(to_jsonable(payload), indent=2,
                                               sort_keys=True) + "\n")

    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    lines += [f"Metric: `{metric}`; groups: " + ", ".join(f"{k} (n={len(v)})"
                                                        for k, v in values.items()) + ".", ""]
    if provenance:
        lines += ["Source: " + "; ".join(f"{k} = `{v}`" for k, v in provenance.items()
                                         if v is not None) + ".", ""]
    lines += _markdown_tables(result, metric)
    lines += ["## Figures", "", f"![{metric} per group: box and strip plot]({rel['box_strip']})",
              "", f"![{metric} histograms per group]({rel['histograms']})", ""]
    if extra_markdown:
        lines += [extra_markdown.rstrip(), ""]
    lines += [f"_medrepro {env.get('medrepro_version')} "
              f"({env.get('git_revision') or 'no git revision'}), {env.get('created')}_", ""]
    markdown_text = "\n".join(lines)
    md_path = out / "report.md"
    write_text(md_path, markdown_text)

    images = {r: base64.b64encode(fig_paths[k].read_bytes()).decode("ascii")
              for k, r in rel.items()}
    body = _markdown_to_html(markdown_text, images)
    write_text(
        out / "report.html",
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
    return md_path


def report_from_store(store, experiment, metric, *, by="group", where=None, out_dir, split=None,
                      alpha=0.05, equal_var=False, title=None, pair_by=None):
    """Writes a comparison report of one metric of an experiment's evaluations.

    The groups are independent unless `pair_by` names the unit each value was
    measured on; then the report is `shared.report.paired.paired_report_from_store`'s.

    Args:
        store: ResultsStore (or URL string) to read from.
        experiment: str. Experiment name.
        metric: str. Metric compared between groups.
        by: str. Field defining the groups (`group`, `split`, `model_id`, an extra key).
        where: str, optional. Filter expression (see `WhereExpression`), e.g.
            `"val_accuracy > 0.95"` (another metric of the same model).
        out_dir: str or Path. Folder of the report.
        split: str, optional. Only evaluations of this split.
        alpha, equal_var: passed to `compare_groups`.
        title: str, optional. Defaults to "<experiment>: <metric> by <by>".
        pair_by: str, optional. Field(s) matching the values across the groups
            (e.g. `trial_index`, `seed`, `fold`, or `run,trial_index`): paired tests.

    Returns:
        Path of report.md.
    """
    if pair_by is not None:
        from shared.report.paired import paired_report_from_store

        return paired_report_from_store(store, experiment, metric, pair_by=pair_by, by=by,
                                        where=where, out_dir=out_dir, split=split, alpha=alpha,
                                        title=title)
    from shared.tracking.store import ResultsStore, open_store

    if not isinstance(store, ResultsStore):
        store = open_store(store)
    rows = store.evaluations(experiment)
    if not rows:
        raise ValueError(f"experiment {experiment!r}: no evaluations in {store.masked_url}")
    groups, models = select_values(rows, metric, by=by, where=where, split=split)
    if len(groups) < 2:
        raise ValueError(f"experiment {experiment!r}, metric {metric!r}: need at least 2 groups "
                         f"by {by!r} after filtering, got {list(groups)}")
    provenance = {"store": store.masked_url, "experiment": experiment, "metric": metric,
                  "by": by, "where": where, "split": split, "models": len(models)}
    return write_comparison_report(
        groups, metric=metric, out_dir=out_dir,
        title=title or f"{experiment}: {metric} by {by}",
        description=f"Values: evaluations of experiment `{experiment}`, one per model, grouped "
                    f"by `{by}`" + (f", filtered by `{where}`" if where else "") + ".",
        alpha=alpha, equal_var=equal_var, provenance=provenance)
