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


def summarize(results):
    """{framework: {metric: (mean, std)}} over folds (std with ddof=0 for 1 fold)."""
    table = {}
    for fw, folds in results.items():
        table[fw] = {}
        for m in METRICS:
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
                 stats_md, recorded, notes, seconds, claims=None):
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
        f"{config.width}, depth {config.depth}; {folds} subject-level fold(s) of "
        f"{config.n_folds}; {seconds / 60:.1f} min.",
        "",
        "| framework | precision | recall | accuracy | paper precision | paper recall | paper accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fw in frameworks:
        ours = table[fw]
        paper = PAPER_TABLE1.get(fw)
        if paper is not None:
            ref = [_fmt(p) for p in paper]
        elif fw in PAPER_ABLATIONS:
            ref = ["-", "-", f"{PAPER_ABLATIONS[fw]:.1f}"]
        else:
            ref = ["-", "-", "-"]
        lines.append(f"| {FRAMEWORKS[fw].label} | " + " | ".join(_fmt(ours[m]) for m in METRICS)
                     + " | " + " | ".join(ref) + " |")
    lines += ["", "Mean ± standard deviation over folds, in percent; AD is the positive class.",
              ""]
    checks = claim_checks(table)
    if checks:
        lines += ["## The paper's claims in numbers (fold means, no test)", ""]
        for text, ok, detail in checks:
            lines.append(f"- {text}: {'yes' if ok else 'no'} ({detail})")
        lines.append("")
    lines += ["## Figures", "", "![BAR and CutMix mixes with soft labels](figures/bar_vs_cutmix.png)",
              ""]
    for fw, p in curve_paths.items():
        lines += [f"![training curves: {FRAMEWORKS[fw].label}](figures/{p.name})", ""]
    if stats_md is not None:
        lines += [f"Statistical comparison of the frameworks: [stats/report.md]"
                  f"({Path(stats_md).relative_to(out).as_posix()})", ""]
    lines.append("Results store: " + ("rows recorded." if recorded else "not recorded."))
    lines += [f"- {n}" for n in notes]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
