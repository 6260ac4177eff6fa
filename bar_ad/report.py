"""Figures, Table 1 and report.md of the BAR reproduction.

`mixing_figure` shows BAR and CutMix mixes with their soft labels, `curves_figure` a
framework's pre-training and fine-tuning curves; `summarize` gives Table 1 (mean ± std
over the folds), `claim_checks` the paper's claims evaluated on it, and `write_report`
writes report.md with both beside the paper's numbers.
"""

from pathlib import Path

import numpy as np

from bar_ad.config import FRAMEWORKS, METRICS, PAPER_ABLATIONS, PAPER_TABLE1
from bar_ad.mixing import RegionMixer, cube_partition


def mixing_figure(atlas, data, config, path, *, seed=0):
    """Grid of axial mid-slices: anchor, partner, BAR mix and CutMix mix with soft labels."""
    import tensorflow as tf

    from shared.report.figures import save_image_grid

    y = data["y"]
    ad, cn = np.flatnonzero(y == 1)[:2], np.flatnonzero(y == 0)[:2]
    # Alternate AD and CN so that most partners (a cyclic shift) have the other label.
    picks = [int(i) for pair in zip(ad, cn) for i in pair] or [int(i) for i in np.arange(min(4, len(y)))]
    x = data["x"][picks].astype(np.float32)
    labels = y[picks].astype(np.float32)
    bar = RegionMixer(atlas.labels, atlas.brain_mask, alpha=1.0, beta=1.0)
    cut = RegionMixer(cube_partition(atlas.shape, config.cutmix_cells), atlas.brain_mask,
                      alpha=1.0, beta=1.0)
    s = tf.constant([seed, 7], tf.int32)
    bar_x, bar_y, bar_d = bar.mix(tf.constant(x), labels, s, return_details=True)
    cut_x, cut_y, _ = cut.mix(tf.constant(x), labels, s, return_details=True)
    bar_bam = bar.bam(bar_x, s + 1, bar_d["selected"])
    z = config.grid // 2 - config.grid // 16
    images, titles = [], []
    partner = bar_d["partner"].numpy()
    name = {0: "CN", 1: "AD"}
    for i in range(len(picks)):
        j = int(partner[i])
        images += [np.rot90(x[i, :, :, z, 0]), np.rot90(x[j, :, :, z, 0]),
                   np.rot90(bar_x.numpy()[i, :, :, z, 0]), np.rot90(bar_bam.numpy()[i, :, :, z, 0]),
                   np.rot90(cut_x.numpy()[i, :, :, z, 0])]
        titles += [f"X_i ({name[int(labels[i])]})", f"X_j ({name[int(labels[j])]})",
                   f"BAR y={float(bar_y[i]):.2f}", "BAR + BAM", f"CutMix y={float(cut_y[i]):.2f}"]
    save_image_grid(images, path, titles=titles, ncols=5)
    return Path(path)


def curves_figure(result, path, title):
    """Pre-training and fine-tuning curves of one fold; None when it has no history."""
    from shared.report.figures import plot_history

    hist = {}
    for key, vals in result["pretrain_history"].items():
        hist[f"pretrain_{key}"] = vals
    for key, vals in result["finetune_history"].items():
        hist[f"finetune_{key}"] = vals
    if hist:
        plot_history(hist, path, title=title)
        return Path(path)
    return None


COLLAPSE_KEYS = ("cls_cosine", "contrastive", "contrastive_floor", "kernel_min", "kernel_max")


def collapse_rows(results, frameworks) -> list:
    """Per pre-training framework: first and last epoch of the collapse diagnostics.

    Means over the folds of the per-epoch pre-training history (`cls_cosine`: mean
    cosine between the [cls] tokens of different scans of a batch; `contrastive`: the
    contrastive term; `contrastive_floor`: the lowest value the soft-label loss can take
    on the batch's labels, `shared.losses.infonce.attainable_minimum`; `kernel_min` /
    `kernel_max`: the range of the soft-label kernel's pair weights in a batch). A mean cosine near 1 with a contrastive term near its
    floor is a collapsed encoder.

    Returns:
        list of dict(framework, n_folds, and for each key present `<key>_first`,
        `<key>_last`).
    """
    rows = []
    for fw in frameworks:
        hists = [f["pretrain_history"] for f in results[fw] if f["pretrain_history"]]
        if not hists:
            continue
        row = {"framework": fw, "n_folds": len(hists)}
        for key in COLLAPSE_KEYS:
            series = [h[key] for h in hists if h.get(key)]
            if series:
                row[f"{key}_first"] = float(np.mean([s[0] for s in series]))
                row[f"{key}_last"] = float(np.mean([s[-1] for s in series]))
        rows.append(row)
    return rows


def collapse_markdown(rows) -> list:
    """The collapse table of `collapse_rows` as Markdown lines (empty when no row)."""
    if not rows:
        return []

    def cell(row, key):
        if f"{key}_first" not in row:
            return "-"
        return f"{row[f'{key}_first']:.3f} → {row[f'{key}_last']:.3f}"

    lines = ["## Collapse of the pre-trained encoder", "",
             "First → last pre-training epoch, mean over folds. `cls cosine`: mean cosine "
             "between the [cls] tokens of different scans in a batch (1 = every scan encoded "
             "alike); floor: the lowest value the soft-label loss (Eq. 4 as printed) can "
             "take on the batch's labels, whatever the encoder (collapse scores 0); kernel "
             "weights: smallest and largest soft-label pair weight in a batch (at the "
             "paper's sigma = 0.8 labels 0 and 1 still weigh 0.46).", "",
             "| framework | cls cosine | contrastive term | its floor | kernel weight min | "
             "kernel weight max |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {FRAMEWORKS[row['framework']].label} | {cell(row, 'cls_cosine')} | "
                     f"{cell(row, 'contrastive')} | {cell(row, 'contrastive_floor')} | "
                     f"{cell(row, 'kernel_min')} | {cell(row, 'kernel_max')} |")
    return lines + [""]


def collapse_figure(results, frameworks, path):
    """Per-epoch cls cosine and contrastive term of every pre-training framework (fold 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {fw: results[fw][0]["pretrain_history"] for fw in frameworks
              if results[fw] and results[fw][0]["pretrain_history"].get("cls_cosine")}
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for fw, hist in series.items():
        epochs = np.arange(1, len(hist["cls_cosine"]) + 1)
        axes[0].plot(epochs, hist["cls_cosine"], marker="o", ms=3, label=FRAMEWORKS[fw].label)
        if hist.get("contrastive"):
            axes[1].plot(epochs, hist["contrastive"], marker="o", ms=3, label=FRAMEWORKS[fw].label)
    axes[0].set_title("mean cosine between [cls] tokens")
    axes[1].set_title("contrastive term")
    for ax in axes:
        ax.set_xlabel("pre-training epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def reliance_markdown(results, frameworks) -> list:
    """Which regions each framework's first-fold classifier relies on (region occlusion)."""
    from bar_ad.region_reliance import signal_agreement

    rows = [(fw, results[fw][0].get("region_reliance")) for fw in frameworks]
    rows = [(fw, r) for fw, r in rows if r is not None]
    if not rows:
        return []
    lines = ["## Which regions the classifiers rely on (first fold or draw)", "",
             "Each merged atlas region replaced by the training scans' mean volume, on "
             f"{rows[0][1]['n_ad']} AD and {rows[0][1]['n_cn']} CN test scans: the mean drop "
             "of P(AD). Agreement: Spearman correlation over regions of the drop on AD scans "
             "with the atrophy weights the synthetic cohort was written with.", "",
             "| framework | top regions (drop on AD scans) | drop on CN scans, largest | "
             "agreement with the atrophy pattern |", "| --- | --- | ---: | ---: |"]
    for fw, r in rows:
        ad = np.asarray(r["ad"], float)
        top = ", ".join(f"{r['names'][i]} {ad[i]:+.3f}" for i in np.argsort(-ad)[:3])
        lines.append(f"| {FRAMEWORKS[fw].label} | {top} | {max(r['cn']):+.3f} | "
                     f"{signal_agreement(r):+.2f} |")
    return lines + [""]


def paired_rows(results, frameworks, metric="accuracy") -> list:
    """Every pair of frameworks compared fold by fold (the folds are shared).

    The frameworks of a run share the folds, the initial weights and the batch order, so
    their fold scores are paired: paired t-test and Wilcoxon signed-rank test of the
    per-fold differences (`shared.stats`), two-sided.

    Returns:
        list of dict(a, b, n, mean_difference, paired_t_p, wilcoxon_p); none when fewer
        than 2 folds.
    """
    from shared.stats import paired_t, wilcoxon_signed_rank

    rows = []
    for i, a in enumerate(frameworks):
        for b in frameworks[i + 1:]:
            x = [f["scores"][metric] for f in results[a]]
            y = [f["scores"][metric] for f in results[b]]
            if len(x) < 2 or len(x) != len(y):
                continue
            rows.append(dict(a=a, b=b, n=len(x), mean_difference=float(np.mean(np.subtract(x, y))),
                             paired_t_p=paired_t(x, y)["p"],
                             wilcoxon_p=wilcoxon_signed_rank(x, y)["p"]))
    return rows


def paired_markdown(rows, metric="accuracy") -> list:
    if not rows:
        return []
    lines = ["## Paired comparisons (fold by fold)", "",
             f"{metric} difference first minus second framework over the shared folds; "
             "two-sided p values. With n folds the exact Wilcoxon p cannot fall below "
             "2 / 2^n.", "",
             "| first | second | folds | mean difference | paired t p | Wilcoxon p |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {FRAMEWORKS[r['a']].label} | {FRAMEWORKS[r['b']].label} | {r['n']} | "
                     f"{r['mean_difference']:+.2f} | {r['paired_t_p']:.3g} | {r['wilcoxon_p']:.3g} |")
    return lines + [""]


def summarize(results):
    """{framework: {metric: (mean, std)}} over folds (std with ddof=0 for 1 fold)."""
    table = {}
    for fw, folds in results.items():
        table[fw] = {}
        for m in METRICS + ("auc",):
            if any(m not in f["scores"] for f in folds):
                continue
            vals = np.array([f["scores"][m] for f in folds], float)
            table[fw][m] = (float(vals.mean()), float(vals.std(ddof=1) if len(vals) > 1 else 0.0))
    return table


def _fmt(pair):
    return f"{pair[0]:.1f} ± {pair[1]:.1f}"


def claim_checks(table):
    """The paper's claims evaluated on our table (accuracy means)."""
    acc = {fw: v["accuracy"][0] for fw, v in table.items()}
    checks = []
    if "bar_recon" in acc and len(acc) > 1:
        best = max(acc, key=acc.get)
        checks.append(("BAR + recon has the best accuracy", best == "bar_recon",
                       f"best: {best} ({acc[best]:.1f})"))
    sup = [acc[f] for f in ("cutmix", "cutmix_recon", "bar", "bar_recon") if f in acc]
    ssl = [acc[f] for f in ("ssl_contrastive", "ssl_recon", "ssl_contrastive_recon") if f in acc]
    if sup and ssl:
        checks.append(("supervised pre-training ahead of self-supervised",
                       np.mean(sup) > np.mean(ssl),
                       f"{np.mean(sup):.1f} vs {np.mean(ssl):.1f}"))
    if ssl and "scratch" in acc:
        checks.append(("self-supervised pre-training ahead of scratch",
                       np.mean(ssl) > acc["scratch"], f"{np.mean(ssl):.1f} vs {acc['scratch']:.1f}"))
    for a, b in (("bar", "cutmix"), ("bar_recon", "cutmix_recon")):
        if a in acc and b in acc:
            checks.append((f"{a} ahead of {b}", acc[a] > acc[b], f"{acc[a]:.1f} vs {acc[b]:.1f}"))
    return checks


def write_report(out, config, table, results, data, atlas, frameworks, *, curve_paths,
                 stats_md, recorded, notes, seconds, claims=None, endpoint="accuracy"):
    """Writes report.md: the claims and their verdicts (`claims`, the document of
    `shared.study`; None when no claim compares two of the frameworks run), our Table 1
    beside the paper's, claim checks on the means, figures."""
    from shared.study import claims_markdown

    n_sub = len(np.unique(data["subjects"]))
    ad_sub = len(np.unique(data["subjects"][data["y"] == 1]))
    folds = len(next(iter(results.values())))
    lines = [
        "# BAR (Brain-Aware Replacements) reproduction",
        "",
        claims_markdown(claims) if claims is not None else
        "No claims: no claim of the paper compares two of the frameworks run (no claims.json).\n",
        f"Preset `{config.preset}`: {len(data['y'])} scans of {n_sub} subjects "
        f"({ad_sub} AD, {n_sub - ad_sub} CN) on a {config.grid}^3 grid; atlas: {atlas.source}, "
        f"{atlas.num_regions} merged regions; ViT patch {config.patch_size}, width "
        f"{config.width}, depth {config.depth}; "
        + (f"{folds} training draw(s) of {config.draw_subjects} subjects, one fixed test set"
           if config.design == "draws" else
           f"{folds} subject-level fold(s) of {config.n_folds}")
        + f"; {seconds / 60:.1f} min.",
        "",
        "| framework | precision | recall | accuracy | paper precision | paper recall | paper accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    with_auc = all("auc" in table[fw] for fw in frameworks)
    if with_auc:
        lines[-2] += " AUC |"
        lines[-1] += " ---: |"
    for fw in frameworks:
        ours = table[fw]
        paper = PAPER_TABLE1.get(fw)
        if paper is not None:
            ref = [_fmt(p) for p in paper]
        elif fw in PAPER_ABLATIONS:
            ref = ["-", "-", f"{PAPER_ABLATIONS[fw]:.1f}"]
        else:
            ref = ["-", "-", "-"]
        auc = f" {ours['auc'][0]:.3f} ± {ours['auc'][1]:.3f} |" if with_auc else ""
        lines.append(f"| {FRAMEWORKS[fw].label} | " + " | ".join(_fmt(ours[m]) for m in METRICS)
                     + " | " + " | ".join(ref) + " |" + auc)
    lines += ["", "Mean ± standard deviation over folds, in percent; AD is the positive class.",
              ""]
    checks = claim_checks(table)
    if checks:
        lines += ["## The paper's claims in numbers (fold means, no test)", ""]
        for text, ok, detail in checks:
            lines.append(f"- {text}: {'yes' if ok else 'no'} ({detail})")
        lines.append("")
    lines += paired_markdown(paired_rows(results, frameworks, endpoint), endpoint)
    lines += collapse_markdown(collapse_rows(results, frameworks))
    lines += reliance_markdown(results, frameworks)
    lines += ["## Figures", "", "![BAR and CutMix mixes with soft labels](figures/bar_vs_cutmix.png)",
              ""]
    if (Path(out) / "figures" / "collapse.png").is_file():
        lines += ["![cls cosine and contrastive term per pre-training epoch](figures/collapse.png)",
                  ""]
    if (Path(out) / "figures" / "region_reliance.png").is_file():
        lines += ["![drop of P(AD) when each atlas region is replaced, per framework]"
                  "(figures/region_reliance.png)", ""]
    for fw, p in curve_paths.items():
        lines += [f"![training curves: {FRAMEWORKS[fw].label}](figures/{p.name})", ""]
    if stats_md is not None:
        lines += [f"Statistical comparison of the frameworks: [stats/report.md]"
                  f"({Path(stats_md).relative_to(out).as_posix()})", ""]
    lines.append("Results store: " + ("rows recorded." if recorded
                                      else "unreachable; rows spooled (see the notes)."))
    lines += [f"- {n}" for n in notes]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
