"""Paired comparison reports: arms measured on the same units (trials, seeds, folds).

`write_paired_report` compares arms whose values are matched unit by unit with
`shared.stats.compare_paired_arms` (Wilcoxon signed-rank and paired t-test per pair,
the interval of the mean difference, Friedman first for three or more arms, Holm
across pairs) and writes the same files as `write_comparison_report`: report.json,
report.md, a self-contained report.html, and `figures/<metric>_paired.png` (one line
per unit across the arms, and the strip of each pair's differences).

`paired_report_from_store` collects the values from the results store with
`shared.report.selection.select_paired`: units that only some arms have are
dropped, and counted in the report.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from shared.io.atomic import write_text
from shared.report.comparison import _CSS, _markdown_to_html, _n, _p
from shared.report.figures import save_paired_differences
from shared.report.selection import select_paired
from shared.stats import compare_paired_arms
from shared.tracking.runs import finite_or_none, to_jsonable

_SHOWN_DROPPED = 10


def _flag(significant):
    return "yes" if significant else "no"


def _tables(result, metric, level):
    lines = ["## Arms", "", "| arm | units | mean | SD | median |", "|---|---|---|---|---|"]
    for name, d in result["descriptives"].items():
        lines.append(f"| {name} | {d['n']} | {_n(d['mean'])} | {_n(d['sd'])} | "
                     f"{_n(d['median'])} |")
    lines.append("")
    friedman = result["friedman"]
    if friedman is not None:
        lines += ["## Friedman test", "",
                  f"Friedman chi-square over {len(result['arms'])} arms and {result['n']} units: "
                  f"statistic = {_n(friedman['statistic'])}, p = {_p(friedman['p'])} "
                  f"(alpha = {result['alpha']:g}): "
                  + ("**significant**" if friedman["significant"] else "not significant")
                  + "." + (f" {friedman['note']}." if "note" in friedman else ""), ""]
    pct = f"{100 * level:g}%"
    lines += ["## Paired comparisons (differences a - b)", "",
              f"| comparison | units | mean difference | {pct} CI | Hodges-Lehmann | d_z | "
              "Shapiro-Wilk p (differences) | Wilcoxon W | p | Holm p | significant | "
              "paired t | df | p | Holm p | significant |",
              "|" + "---|" * 16]
    for pair in result["pairs"]:
        w, t = pair["wilcoxon"], pair["paired_t"]
        lines.append(
            f"| {pair['a']} - {pair['b']} | {pair['n']} | {_n(pair['mean_difference'])} | "
            f"[{_n(pair['ci'][0])}, {_n(pair['ci'][1])}] | {_n(pair['hodges_lehmann'])} | "
            f"{_n(pair['cohens_dz'], 3)} | {_p(pair['shapiro']['p'])} | {_n(w['statistic'])} | "
            f"{_p(w['p'])} | {_p(w['p_holm'])} | {_flag(w['significant'])} | "
            f"{_n(t['statistic'])} | {t['df']} | {_p(t['p'])} | {_p(t['p_holm'])} | "
            f"{_flag(t['significant'])} |")
    return lines + [""]


def _decision(result, pair_by, n_dropped, level):
    alpha = result["alpha"]
    steps = [f"Values are paired by `{pair_by}`: {result['n']} unit(s) are in every arm"
             + (f"; {n_dropped} unit(s) in only some arms are left out." if n_dropped else ".")]
    friedman = result["friedman"]
    if friedman is not None:
        steps.append(f"{len(result['arms'])} arms: Friedman test p = {_p(friedman['p'])} "
                     f"{'<' if friedman['significant'] else '>='} alpha = {alpha:g}; the "
                     f"pairwise p-values of each test are Holm-adjusted over "
                     f"{len(result['pairs'])} pairs (the intervals are per pair, not "
                     f"adjusted).")
    for pair in result["pairs"]:
        w, t, sw = pair["wilcoxon"], pair["paired_t"], pair["shapiro"]
        if sw["p"] is None:
            normality = (f"normality of the differences is not testable ({sw['note']}), so "
                         f"the Wilcoxon test is the one to read")
        elif sw["normal"]:
            normality = (f"Shapiro-Wilk finds no departure from normal differences (p = "
                         f"{_p(sw['p'])}), so the paired t-test may be read too")
        else:
            normality = (f"the differences are not normal (Shapiro-Wilk p = {_p(sw['p'])}), "
                         f"so the Wilcoxon test is the one to read")
        adjusted = len(result["pairs"]) > 1
        steps.append(
            f"{pair['a']} - {pair['b']}: mean difference {_n(pair['mean_difference'])} "
            f"({100 * level:g}% CI [{_n(pair['ci'][0])}, {_n(pair['ci'][1])}]); Wilcoxon "
            f"signed-rank p = {_p(w['p'])}" + (f" (Holm {_p(w['p_holm'])})" if adjusted else "")
            + f", {'significant' if w['significant'] else 'not significant'}; paired t-test "
            f"p = {_p(t['p'])}" + (f" (Holm {_p(t['p_holm'])})" if adjusted else "")
            + f", {'significant' if t['significant'] else 'not significant'}; {normality}."
            + "".join(f" Note: {r['note']}." for r in (w, t) if "note" in r))
    return steps


def write_paired_report(arms, *, metric, out_dir, title, pair_by, units=None, dropped=(),
                        description="", alpha=0.05, provenance=None):
    """Compares paired arms of a metric and writes report.md, report.html, report.json, figures.

    Args:
        arms: dict arm -> sequence of float, one value per unit, every arm in the
            same unit order (at least 2 arms and 2 units).
        metric: str. Name of the metric (axis labels, file names).
        out_dir: str or Path. Folder written (created when missing).
        title: str. Heading of the report.
        pair_by: str. What the units are (e.g. "trial_index"), for the text.
        units: list of str, optional. Unit labels in the arms' order.
        dropped: list of {"unit", "groups"}. Units only some arms have, left out.
        description: str. Paragraph shown under the title.
        alpha: float. Significance level; the intervals are at level 1 - alpha.
        provenance: dict, optional. Where the values came from; written to the JSON
            and the Markdown.

    Returns:
        Path of report.md.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = {str(k): [float(x) for x in v] for k, v in arms.items()}
    level = 1.0 - alpha
    result = compare_paired_arms(values, alpha=alpha, level=level)
    units = [str(u) for u in units] if units is not None else \
        [str(i) for i in range(result["n"])]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", metric)
    figure = out / "figures" / f"{safe}_paired.png"
    save_paired_differences(values, figure, metric=metric,
                            intervals={(p["a"], p["b"]): p["ci"] for p in result["pairs"]})
    rel = figure.relative_to(out).as_posix()

    from shared.tracking.store import mask_url, run_environment

    env = run_environment()
    provenance = {k: mask_url(v) if isinstance(v, str) and "://" in v else v
                  for k, v in (provenance or {}).items()}
    dropped = list(dropped)
    payload = {"title": title, "metric": metric, "pair_by": pair_by, "units": units,
               "values": values, "dropped_units": {"count": len(dropped), "units": dropped},
               "comparison": result, "figures": {"paired": rel}, "provenance": provenance,
               "environment": {k: env.get(k) for k in ("medrepro_version", "git_revision",
                                                       "created")}}
    write_text(out / "report.json", json.dumps(finite_or_none(to_jsonable(payload)), indent=2,
                                               sort_keys=True) + "\n")

    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    lines += [f"Metric: `{metric}`; arms: {', '.join(values)}; paired by `{pair_by}`: "
              f"{result['n']} unit(s) in every arm.", ""]
    if dropped:
        shown = "; ".join(f"{d['unit']} (only in {', '.join(d['groups'])})"
                          for d in dropped[:_SHOWN_DROPPED])
        more = f"; and {len(dropped) - _SHOWN_DROPPED} more" if len(dropped) > _SHOWN_DROPPED \
            else ""
        lines += [f"Dropped: {len(dropped)} unit(s) not in every arm: {shown}{more}.", ""]
    if provenance:
        lines += ["Source: " + "; ".join(f"{k} = `{v}`" for k, v in provenance.items()
                                         if v is not None) + ".", ""]
    lines += _tables(result, metric, level)
    lines += ["## Decision path", ""] + [f"{i}. {s}" for i, s in enumerate(
        _decision(result, pair_by, len(dropped), level), start=1)] + [""]
    lines += ["## Figures", "", f"![{metric}: paired values and differences]({rel})", ""]
    lines += [f"_medrepro {env.get('medrepro_version')} "
              f"({env.get('git_revision') or 'no git revision'}), {env.get('created')}_", ""]
    markdown_text = "\n".join(lines)
    md_path = out / "report.md"
    write_text(md_path, markdown_text)
    body = _markdown_to_html(markdown_text,
                             {rel: base64.b64encode(figure.read_bytes()).decode("ascii")})
    write_text(
        out / "report.html",
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
    return md_path


def paired_report_from_store(store, experiment, metric, *, pair_by, by="group", where=None,
                             out_dir, split=None, alpha=0.05, title=None):
    """Writes a paired report of one metric of an experiment's evaluations.

    Args:
        store: ResultsStore (or URL string) to read from.
        experiment: str. Experiment name.
        metric: str. Metric compared between the arms.
        pair_by: str. Field naming each value's unit (a key of the rows' extra such as
            `trial_index`, `seed` or `fold`, or a row field), or several separated by
            commas (`run,trial_index`).
        by: str. Field defining the arms. Defaults to "group".
        where: str, optional. Filter expression (see `WhereExpression`).
        out_dir: str or Path. Folder of the report.
        split: str, optional. Only evaluations of this split.
        alpha: float. Significance level.
        title: str, optional. Defaults to "<experiment>: <metric> by <by>, paired by
            <pair_by>".

    Returns:
        Path of report.md.

    Raises:
        ValueError: no evaluations, an unknown `pair_by` field, fewer than 2 arms, or
            fewer than 2 units that every arm has.
    """
    from shared.tracking.store import ResultsStore, open_store

    if not isinstance(store, ResultsStore):
        store = open_store(store)
    rows = store.evaluations(experiment)
    if not rows:
        raise ValueError(f"experiment {experiment!r}: no evaluations in {store.masked_url}")
    selected = select_paired(rows, metric, pair_by=pair_by, by=by, where=where, split=split)
    arms, units, dropped = selected["arms"], selected["units"], selected["dropped"]
    if len(arms) < 2:
        raise ValueError(f"experiment {experiment!r}, metric {metric!r}: need at least 2 groups "
                         f"by {by!r} after filtering, got {list(arms)}")
    if len(units) < 2:
        raise ValueError(f"pair-by {pair_by!r}: expected at least 2 units that every group "
                         f"({', '.join(arms)}) has, got {len(units)}; {len(dropped)} unit(s) "
                         f"are in only some groups")
    provenance = {"store": store.masked_url, "experiment": experiment, "metric": metric,
                  "by": by, "pair_by": pair_by, "where": where, "split": split,
                  "models": len(selected["models"])}
    return write_paired_report(
        arms, metric=metric, out_dir=out_dir, pair_by=pair_by, units=units, dropped=dropped,
        title=title or f"{experiment}: {metric} by {by}, paired by {pair_by}",
        description=f"Values: evaluations of experiment `{experiment}`, one per model, grouped "
                    f"by `{by}` and matched across the groups by `{pair_by}`"
                    + (f", filtered by `{where}`" if where else "") + ".",
        alpha=alpha, provenance=provenance)
