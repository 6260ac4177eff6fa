"""Report of the LGE QA reproduction: Table 2, Figs. 2-3 and report.md.

`summarise` and `table_markdown` give our Table 2 (mean ± std over the repetitions)
beside the paper's; `save_cam_figure` draws Fig. 2 (HiResCAM of the QA output, Baseline
vs Multi-Task), `save_embedding_figure` Fig. 3 (UMAP, or PCA without umap-learn, of the
encoder embeddings); `write_report` writes the run's report.md.
"""

import warnings
from pathlib import Path

import numpy as np

from lge_qa import models
from lge_qa.config import METRICS, STRATEGIES

STRATEGY_TITLES = {"baseline": "QA", "multitask": "Multi-Task QA", "contrastive": "QA & Contrastive"}
PAPER_TABLE2 = {
    "baseline": {"precision": (0.60, 0.05), "recall": (0.90, 0.15), "f1": (0.71, 0.05), "specificity": (0.38, 0.20)},
    "multitask": {"precision": (0.63, 0.07), "recall": (0.90, 0.12), "f1": (0.73, 0.04), "specificity": (0.44, 0.24)},
    "contrastive": {"precision": (0.65, 0.07), "recall": (0.94, 0.08), "f1": (0.76, 0.05), "specificity": (0.48, 0.17)},
}


# ----------------------------------------------------------------------------- figures


def save_cam_figure(models_by_strategy, x, case_index, scan_labels, slice_prob, path, *, n_scans, layer_name):
    """Fig. 2: HiResCAM of the QA output, Baseline vs Multi-Task, on the same test slices."""
    import tensorflow as tf

    from shared.explain import attribution_maps
    from shared.report.figures import save_overlay_grid

    scans = sorted(set(case_index.tolist()))[:n_scans]
    picks = []
    for s in scans:
        idx = np.flatnonzero(case_index == s)
        picks.append(idx[len(idx) // 2])
    picks = np.asarray(picks)
    images, heatmaps, titles = [], [], []
    for strategy in ("baseline", "multitask"):
        model = models_by_strategy[strategy]
        xb = tf.convert_to_tensor(x[picks])
        pred = (slice_prob[strategy][picks] >= 0.5).astype("float32")
        pred_t = tf.constant(pred)

        def target(outputs, pred_t=pred_t):
            p = outputs[models.QA_OUTPUT][:, 0]
            return pred_t * p + (1.0 - pred_t) * (1.0 - p)

        maps = attribution_maps(model, xb, layer_name=layer_name, targets=target, method="hirescam",
                                upsample_to=x.shape[1:3], normalize=True)
        for j, i in enumerate(picks):
            images.append(x[i, ..., 0])
            heatmaps.append(np.asarray(maps[j]))
            titles.append(f"{STRATEGY_TITLES[strategy]}: true {scan_labels[case_index[i]]}, pred {int(pred[j])}")
    save_overlay_grid(images, heatmaps, path, titles=titles, ncols=len(picks))
    return path


def project_2d(embeddings, *, seed, method="umap"):
    """UMAP (umap-learn) when asked for and installed, else PCA. Returns ([N, 2], method name)."""
    umap = None
    if method == "umap":
        try:
            import umap
        except ImportError:
            umap = None
    if umap is not None and len(embeddings) > 10:
        reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(embeddings) - 1))
        with warnings.catch_warnings():
            # A seeded UMAP runs on one thread and says so at every call.
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            return reducer.fit_transform(embeddings), "UMAP"
    centred = embeddings - embeddings.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PCA"


def save_embedding_figure(models_by_strategy, x, qa_labels, path, *, seed, method="umap"):
    """Fig. 3: 2D projection of each strategy's encoder embedding, coloured by QA label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = [s for s in STRATEGIES if s in models_by_strategy]
    fig, axes = plt.subplots(1, len(strategies), figsize=(4 * len(strategies), 4), squeeze=False)
    used = "PCA"
    for ax, strategy in zip(axes[0], strategies):
        emb = models.embedding_model(models_by_strategy[strategy]).predict(x, verbose=0)
        xy, used = project_2d(np.asarray(emb, dtype="float64"), seed=seed, method=method)
        for label, colour, name in ((0, "tab:red", "non-diagnostic"), (1, "tab:blue", "diagnostic")):
            sel = qa_labels == label
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, c=colour, label=name, alpha=0.7)
        ax.set_title(f"{STRATEGY_TITLES[strategy]} ({used})")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    from shared.io.atomic import save_figure

    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path, used


# ----------------------------------------------------------------------------- tables


def summarise(results) -> dict:
    """{strategy: {metric: (mean, std)}} over repetitions (std with ddof=1 when n > 1)."""
    out = {}
    for strategy, reps in results.items():
        out[strategy] = {}
        for metric in METRICS:
            values = np.asarray([r[metric] for r in reps], dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[strategy][metric] = (float(values.mean()), std)
    return out


def table_markdown(summary) -> str:
    """Our Table 2 beside the paper's."""
    lines = ["| Method | " + " | ".join(m.capitalize() for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for strategy, stats in summary.items():
        ours = " | ".join(f"{stats[m][0]:.2f} ± {stats[m][1]:.2f}" for m in METRICS)
        lines.append(f"| {STRATEGY_TITLES[strategy]} (ours) | {ours} |")
        paper = PAPER_TABLE2[strategy]
        lines.append(f"| {STRATEGY_TITLES[strategy]} (paper) | "
                     + " | ".join(f"{paper[m][0]:.2f} ± {paper[m][1]:.2f}" for m in METRICS) + " |")
    return "\n".join(lines)


def detector_sentence(threshold, det) -> str:
    """Stage-1 scores in one sentence (scored only on the scans that have a stored mask)."""
    if det.get("dice") is None:
        return (f"Threshold t = {threshold}: no scored scan has a stored LA mask, so the detector "
                f"is not scored ({det['selected_slices']} slices selected).")
    return (f"Threshold t = {threshold}: Dice {det['dice']:.3f}, slice-selection precision "
            f"{det['slice_precision']:.3f}, recall {det['slice_recall']:.3f} over the "
            f"{det.get('scored_slices', det['la_slices'])} slices of the scans with a stored mask "
            f"({det['selected_slices']} selected, {det['la_slices']} contain the LA).")


def write_report(out, cfg, strategies, summary, det, figures, projection, stats_paths, seconds, store_rows,
                 claims=None):
    """Writes report.md: the claims and their verdicts (`claims`, the document of
    `shared.study`; None when a single strategy ran), the detector's scores, our Table 2
    beside the paper's, Figs. 2-3."""
    from shared.study import claims_markdown

    lines = [
        "# LGE-MRI quality assessment (Sultan et al.): reproduction run",
        "",
        claims_markdown(claims) if claims is not None else
        "No claims: a single strategy ran, and every hypothesis compares two (no claims.json).\n",
        f"{cfg.n_scored} scored scans, {cfg.n_segmentation} masks-only scans, slices {cfg.image_size} px, "
        f"{cfg.repetitions} repetitions, test split {cfg.test_scans} scans. Run time {seconds:.0f} s; "
        f"{store_rows} rows written to the results store.",
        "",
        "## Stage 1: left-atrium detector",
        "",
        detector_sentence(cfg.detection_threshold, det),
        "",
        "## Stage 2: Table 2 (fibrosis-quality label, diagnostic = positive; mean ± std)",
        "",
        table_markdown(summary),
        "",
    ]
    if stats_paths:
        lines += ["Statistical comparisons: "
                  + ", ".join(f"[{m}]({Path(p).relative_to(out)})" for m, p in stats_paths.items()), ""]
    if "hirescam" in figures:
        lines += ["## Fig. 2: HiResCAM, Baseline vs Multi-Task", "",
                  f"![HiResCAM]({Path(figures['hirescam']).relative_to(out)})", ""]
    lines += [f"## Fig. 3: encoder embeddings ({projection})", "",
              f"![embeddings]({Path(figures['embedding']).relative_to(out)})", ""]
    if projection != "UMAP" and cfg.projection == "umap":
        lines += ["umap-learn is not installed; PCA is shown instead (`pip install umap-learn`).", ""]
    from shared.io.atomic import write_text

    return write_text(out / "report.md", "\n".join(lines))
