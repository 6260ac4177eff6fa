"""The report of a heatmap-loss study: claims, model counts, comparisons and figures.

Figures (thesis section 3.4-3.5):

* `overlap_distributions.png`: every model's mean overlaps per group (kept models
  filled, the others hollow);
* `marker_iqr.png` (marker studies): the kept models' marker overlaps of each
  group, all of them and after removing values beyond 1.5 and 5 IQRs of the
  group's median (thesis Figs. 3.19 / 3.20);
* `overlays_<group>.png` and `overlays_<group>_unnormalised.png`: HiResCAM of the
  true class of one kept model per group drawn at random (seeded by the run seed),
  each map min-max normalised, and all maps on one colour scale (the grid's
  largest value), as the thesis shows them;
* `occlusion_drops.png` (when the models were occluded, `heatmap_loss.dependence`):
  per group the mean drop in true-class probability when the heart or its complement
  is blurred, and the paired differences heatmap - cce per trial (H4, H5);
* `deletion_insertion.png` (same condition): the mean deletion and insertion curves of
  the HiResCAM maps per kept model (thin) and per group (thick).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from heatmap_loss.config import experiment_name
from shared.io.atomic import save_figure, write_text
from shared.stats import iqr_filter
from shared.study import claims_markdown
from shared.tracking.store import mask_url

GROUPS = ("cce", "heatmap")
IQR_FILTERS = (1.5, 5.0)
STATUS_LABELS = {"kept": "kept", "below_filter": "below the filter", "not_trained": "not trained"}


def _fmt(x, digits=3):
    return "-" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def status_counts(records) -> dict:
    """group -> {"trained": n, "kept": n, "below_filter": n, "not_trained": n}."""
    out = {}
    for g in GROUPS:
        mine = [r for r in records if r["group"] == g]
        out[g] = {"trained": len(mine), **{s: sum(r["status"] == s for r in mine)
                                            for s in STATUS_LABELS}}
    return out


def draw_overlay_models(records, seed: int) -> dict:
    """group -> the record of one kept model drawn at random (seeded), or None."""
    rng = np.random.default_rng([int(seed), 0x0E1A])
    out = {}
    for g in GROUPS:
        kept = [r for r in records if r["group"] == g and r["kept"]]
        out[g] = kept[int(rng.integers(len(kept)))] if kept else None
    return out


def save_overlays(images, maps, labels, classes, path, *, normalized: bool, title: str,
                  ncols: int) -> Path:
    """One grid of HiResCAM overlays; `normalized=False` puts all maps on one scale."""
    from shared.report.figures import overlay, save_image_grid

    maps = np.maximum(np.asarray(maps, dtype=np.float64), 0.0)
    if normalized:
        panels = [overlay(im, m) for im, m in zip(images, maps)]
    else:
        top = float(maps.max())
        scale = top if top > 0 else 1.0
        panels = [overlay(im, m / scale, normalize=False) for im, m in zip(images, maps)]
    titles = [f"{title}: {classes[int(k)]}" for k in labels]
    return save_image_grid(panels, path, titles=titles, ncols=ncols)


def marker_iqr_figure(records, path) -> Path:
    """Kept models' marker overlaps per group: all, and within 1.5 and 5 IQRs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(IQR_FILTERS), figsize=(12, 3.5), squeeze=False)
    for ax, k in zip(axes[0], (None,) + IQR_FILTERS):
        data, labels = [], []
        for g in GROUPS:
            values = np.array([r["marker_overlap"] for r in records
                               if r["group"] == g and r["kept"]], dtype=float)
            removed = 0
            if k is not None and values.size:
                values, removed = iqr_filter(values, k)
            data.append(values)
            labels.append(f"{g}\n(n={values.size}, -{removed})")
        for i, values in enumerate(data):
            if values.size:
                ax.boxplot(values, positions=[i], widths=0.5)
                ax.plot(np.full(values.size, i) + np.linspace(-0.1, 0.1, values.size), values,
                        "o", alpha=0.6)
        ax.set_xticks(range(len(GROUPS)), labels)
        ax.set_title("all kept models" if k is None else f"within {k:g} IQR of the median")
        ax.set_ylabel("mean marker overlap (male images)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


def overlap_figure(records, path, metrics) -> Path:
    """Strip plots of each model's overlaps per group (kept models filled, others hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, g in enumerate(GROUPS):
            for kept, style in ((True, "o"), (False, "x")):
                vals = [r[metric] for r in records if r["group"] == g and r["kept"] == kept]
                jitter = np.linspace(-0.1, 0.1, len(vals)) if vals else []
                ax.plot(np.full(len(vals), i) + jitter, vals, style, alpha=0.8,
                        label=f"{g}{'' if kept else ' (not kept)'}")
        ax.set_xticks(range(len(GROUPS)), GROUPS)
        ax.set_ylabel(f"mean {metric.replace('_', ' ')} per model")
        if metric == "marker_overlap":
            ax.set_yscale("symlog", linthresh=1e-6)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


DEPENDENCE_ROWS = (("heart_drop", "drop when the heart is blurred (H5)"),
                   ("complement_drop", "drop when everything outside the heart is blurred (H4)"),
                   ("marker_drop", "drop when the marker is blurred (male images)"),
                   ("deletion_area", "deletion area of the maps (small: the map found the evidence)"),
                   ("insertion_area", "insertion area of the maps (large: the map found the evidence)"),
                   ("dependence_time_s", "seconds to compute the rows above, per model"))


def paired_differences(records, metric) -> dict:
    """trial index -> heatmap minus cce on `metric`, for trials with both models kept."""
    by = {g: {r["trial_index"]: r[metric] for r in records
              if r["group"] == g and r["kept"] and metric in r} for g in GROUPS}
    return {k: by["heatmap"][k] - by["cce"][k] for k in sorted(by["heatmap"]) if k in by["cce"]}


def occlusion_figure(records, path, *, sesoi) -> Path:
    """Per group the mean occlusion drops (bars, models as dots) and the paired differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("heart_drop", "heart blurred"), ("complement_drop", "outside blurred"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.38
    for i, g in enumerate(GROUPS):
        for j, (metric, label) in enumerate(metrics):
            values = np.array([r[metric] for r in records
                               if r["group"] == g and r["kept"] and metric in r], float)
            x = j + (i - 0.5) * width
            if values.size:
                left.bar(x, values.mean(), width, color=f"C{i}", alpha=0.5,
                         label=g if j == 0 else None)
                left.plot(np.full(values.size, x), values, "k.", alpha=0.6)
    left.set_xticks(range(len(metrics)), [label for _, label in metrics])
    left.set_ylabel("mean drop in true-class probability")
    left.axhline(0.0, color="grey", lw=0.8)
    left.legend(fontsize=8)
    left.set_title("kept models per group")
    for j, (metric, label) in enumerate(metrics):
        diffs = np.array(list(paired_differences(records, metric).values()), float)
        if diffs.size:
            right.plot(np.full(diffs.size, j) + np.linspace(-0.1, 0.1, diffs.size), diffs, "o",
                       alpha=0.7)
            right.plot([j - 0.2, j + 0.2], [diffs.mean()] * 2, "k-", lw=2)
    for y in (-sesoi, sesoi):
        right.axhline(y, color="grey", ls="--", lw=0.8)
    right.axhline(0.0, color="grey", lw=0.8)
    right.set_xticks(range(len(metrics)), [label for _, label in metrics])
    right.set_ylabel("heatmap - cce, per trial")
    right.set_title(f"paired differences (dashed: +-SESOI {sesoi:g})")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


def curves_figure(records, path) -> Path | None:
    """Deletion and insertion curves per group: each kept model's mean curve (thin) and
    the group's mean of them (thick). None when no record holds curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_curves = [r for r in records if r["kept"] and "deletion_curve" in r]
    if not with_curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, kind, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
        for i, g in enumerate(GROUPS):
            rows = [r for r in with_curves if r["group"] == g]
            if not rows:
                continue
            x = np.asarray(rows[0]["curve_fractions"], float)
            curves = np.array([r[f"{kind}_curve"] for r in rows], float)
            for curve in curves:
                ax.plot(x, curve, color=f"C{i}", lw=0.6, alpha=0.35)
            ax.plot(x, curves.mean(axis=0), color=f"C{i}", lw=2.2, label=f"{g} ({len(rows)} models)")
        ax.set_xlabel(f"share of pixels {'blurred' if kind == 'deletion' else 'restored'}, "
                      "most attributed first")
        ax.set_title(f"{kind}: {better} area = the map ranks the evidence better", fontsize=10)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("true-class probability")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


def dependence_lines(records, out: Path, *, config) -> list:
    """The report's section on what the models' evidence depends on (H4, H5 and checks)."""
    from heatmap_loss.config import DEPENDENCE_SESOI

    if not any("heart_drop" in r for r in records):
        return []
    kept = {g: [r for r in records if r["group"] == g and r["kept"]] for g in GROUPS}
    lines = ["## Did the evidence move, or only the map?", "",
             "Per kept model the mean over the test images of the drop in the true-class "
             "probability when a region is replaced by a Gaussian blur of the image (sigma "
             f"{config.occlusion_blur_sigma:g} px), and the deletion / insertion areas of "
             f"the HiResCAM maps ({config.deletion_steps} steps, the same blur, the first "
             f"{config.curve_images_per_class} test images of each class); mean +- SD over "
             "the kept models. A model that ignores the image has drop 0.", "",
             "| measure | cce | heatmap | heatmap - cce, paired (mean over trials) |",
             "| --- | ---: | ---: | ---: |"]
    for metric, words in DEPENDENCE_ROWS:
        cells = []
        for g in GROUPS:
            values = np.array([r[metric] for r in kept[g] if metric in r], float)
            if values.size > 1:
                cells.append(f"{values.mean():.3g} +- {values.std(ddof=1):.2g}")
            else:
                cells.append(f"{values[0]:.3g} (one model)" if values.size else "-")
        diffs = list(paired_differences(records, metric).values())
        paired = (f"{np.mean(diffs):+.3g} (n {len(diffs)})"
                  if diffs and metric != "dependence_time_s" else "-")
        if cells == ["-", "-"]:
            continue
        lines.append(f"| {words} | {cells[0]} | {cells[1]} | {paired} |")
    seconds = sum(r.get("dependence_time_s", 0.0) for r in records)
    lines += ["", f"These measures added {seconds:.1f} s over the {len(records)} models "
                  "(every trained model is measured, kept or not)."]
    fig = occlusion_figure(records, out / "figures" / "occlusion_drops.png",
                           sesoi=DEPENDENCE_SESOI)
    lines += ["", f"![Occlusion drops]({fig.relative_to(out).as_posix()})", ""]
    curves = curves_figure(records, out / "figures" / "deletion_insertion.png")
    if curves is not None:
        lines += [f"![Deletion and insertion curves]({curves.relative_to(out).as_posix()})", ""]
    checked = {g: next((r for r in records if r["group"] == g and "randomisation" in r), None)
               for g in GROUPS}
    if any(checked.values()):
        names = {g: (r["model_id"] if r else "none kept") for g, r in checked.items()}
        lines += ["Cascading randomisation (Adebayo et al. 2018) of the first kept model of "
                  f"each group ({names['cce']}, {names['heatmap']}) on the overlay images: "
                  "median Spearman correlation of the signed maps with the trained model's "
                  "after re-initialising each layer and those above it. Maps that explain "
                  "the model fall towards 0 as its layers are destroyed.", "",
                  "| layer re-initialised (cascading, output first) | cce | heatmap |",
                  "| --- | ---: | ---: |"]
        layers = next(r["randomisation"]["layers"] for r in checked.values() if r)
        for k, layer in enumerate(layers):
            cells = []
            for g in GROUPS:
                r = checked[g]
                value = r["randomisation"]["spearman_median"][k] if r else None
                cells.append("-" if value is None else f"{value:.2f}")
            lines.append(f"| {layer} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return lines


def _comparisons(records, out, metrics, *, config, study_name, store_url):
    """Descriptive comparison reports of the kept models (the thesis' independent view)."""
    from shared.report import write_comparison_report

    kept = {g: [r for r in records if r["group"] == g and r["kept"]] for g in GROUPS}
    summaries, links = {}, []
    for metric in metrics:
        groups = {g: [r[metric] for r in kept[g]] for g in GROUPS}
        if min(len(v) for v in groups.values()) < 2:
            summaries[metric] = None
            continue
        path = write_comparison_report(
            groups, metric=metric, out_dir=out / metric,
            title=f"{experiment_name(study_name)}: {metric} by loss ({config.preset} preset)",
            description=("Models with validation accuracy above "
                         f"{config.val_accuracy_threshold}; one value per model."),
            provenance={"store": mask_url(store_url), "experiment": experiment_name(study_name)})
        summaries[metric] = json.loads((out / metric / "report.json").read_text())["comparison"]
        links.append(f"- [{metric}]({path.relative_to(out).as_posix()})")
    return kept, summaries, links


def write_report(records, out: Path, *, study_name, config, elapsed, store_url, claims,
                 classes, overlay_images, overlay_labels, seed, initialisation,
                 has_marker) -> Path:
    """Writes the comparison sub-reports, the figures and report.md; returns its path."""
    metrics = ["heart_overlap", "test_accuracy"] + (["marker_overlap"] if has_marker else [])
    kept, summaries, links = _comparisons(records, out, metrics, config=config,
                                          study_name=study_name, store_url=store_url)
    counts = status_counts(records)
    title = (f"experiment {study_name}" if study_name in (1, 2) else f"{study_name} data")
    lines = [f"# Heatmap loss, {title} ({config.preset} preset)", "", claims_markdown(claims),
             f"{len(records)} models trained in {elapsed / 60:.1f} min. Initialisation: "
             f"{initialisation}; trial k of both groups starts from the same weights.", "",
             "## Models per group", "",
             "| group | trained | kept (val acc > "
             f"{config.val_accuracy_threshold}) | below the filter | not trained |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for g in GROUPS:
        c = counts[g]
        lines.append(f"| {g} | {c['trained']} | {c['kept']} | {c['below_filter']} | "
                     f"{c['not_trained']} |")
    lines += ["", "Not trained: a non-finite loss, or a validation accuracy not above the "
                  "majority-class rate. A penalty that loses more models is a result too.", "",
              f"Images {config.image_size[0]} x {config.image_size[1]}, VGG16 filters "
              f"{tuple(config.filters)}, heatmap weight {config.heatmap_weight}, "
              f"{config.method}"
              + (" (marker overlap: mean over the male images, the only ones with a "
                 "marker)" if has_marker else "") + ".", "",
              "## Kept models as independent groups (the thesis' analysis)", "",
              "| metric | cce median | heatmap median | test | p | Cohen's d | CLES |",
              "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for metric in metrics:
        s = summaries[metric]
        med = {g: (float(np.median([r[metric] for r in kept[g]])) if kept[g] else None)
               for g in GROUPS}
        if s is None:
            lines.append(f"| {metric} | {_fmt(med['cce'])} | {_fmt(med['heatmap'])} | "
                         "too few models | - | - | - |")
            continue
        c = s["comparisons"][0]
        lines.append(f"| {metric} | {_fmt(med['cce'])} | {_fmt(med['heatmap'])} | {c.get('test')} | "
                     f"{_fmt(c.get('p_value'))} | {_fmt(c.get('cohens_d'))} | "
                     f"{_fmt(c.get('cles'))} |")
    if has_marker and summaries.get("marker_overlap"):
        c = summaries["marker_overlap"]["comparisons"][0]
        iqr = ", ".join(f"{v['k']:g} IQR: {_fmt(v['cohens_d'])}"
                        for v in c.get("cohens_d_iqr", {}).values())
        lines += ["", f"Cohen's d of the marker overlap after removing values beyond k IQRs "
                      f"from each group's median: {iqr}."]
    if links:
        lines += ["", "Detailed reports (normality tests, decision path, figures):", ""] + links

    lines += [""] + dependence_lines(records, out, config=config)
    figures = out / "figures"
    fig = overlap_figure(records, figures / "overlap_distributions.png", metrics)
    lines += ["", "## Figures", ""]
    if (out / "samples.png").exists():
        lines += ["![Samples](samples.png)", ""]
    lines += [f"![Overlap distributions]({fig.relative_to(out).as_posix()})", ""]
    if has_marker:
        fig = marker_iqr_figure(records, figures / "marker_iqr.png")
        lines += ["Marker overlap of the kept models, all and after the 1.5 and 5 IQR filters "
                  "(thesis Figs. 3.19 / 3.20):", "", f"![Marker IQR]({fig.relative_to(out).as_posix()})",
                  ""]
    for g, record in draw_overlay_models(records, seed).items():
        if record is None:
            lines += [f"No kept {g} model to draw overlays from.", ""]
            continue
        for normalized, suffix, words in ((False, "_unnormalised", "one colour scale for the "
                                           "grid, as the thesis shows them"),
                                          (True, "", "each map min-max normalised")):
            path = save_overlays(overlay_images, record["maps"], overlay_labels, classes,
                                 figures / f"overlays_{g}{suffix}.png", normalized=normalized,
                                 title=g, ncols=config.overlay_per_class)
            lines += [f"HiResCAM of {g} model {record['model_id']} (drawn at random among the "
                      f"kept, seed {seed}), {words}:", "",
                      f"![{g} overlays]({path.relative_to(out).as_posix()})", ""]
    marker = " | marker overlap" if has_marker else ""
    lines += ["## Every model", "",
              "| group | trial | init_seed | lr | epochs | time s | val acc | test acc | "
              f"heart overlap{marker} | status |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---:"
              + (" | ---:" if has_marker else "") + " | --- |"]
    for r in records:
        lines.append(f"| {r['group']} | {r['trial_id']} | {r['init_seed']} | "
                     f"{r['learning_rate']:.2e} | {r['epochs']} | {r['training_time_s']:.1f} | "
                     f"{r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} | "
                     f"{r['heart_overlap']:.3f}"
                     + (f" | {r['marker_overlap']:.2e}" if has_marker else "")
                     + f" | {STATUS_LABELS[r['status']]} |")
    return write_text(out / "report.md", "\n".join(lines) + "\n")
