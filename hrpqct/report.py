"""Figures and report.md of the HR-pQCT reproduction.

`scatter_qme` plots a motion estimate against the consensus grade, `gradcam_figure`
overlays a grader's Grad-CAM on test slices, and `write_report` writes report.md
(operator agreement, scan-level grading of every grader, QME and air-streak
correlations, figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrpqct.models import CAM_LAYER
from shared.io.atomic import save_figure, write_text
from shared.training.seeding import numpy_rng


def scatter_qme(qme_values, grades, path, label):
    """Scatter of `qme_values` over the consensus grades (jittered), log scale when all are positive."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    jitter = numpy_rng(0).uniform(-0.15, 0.15, len(grades))
    ax.scatter(np.asarray(grades) + jitter, qme_values, s=12, alpha=0.7)
    ax.set_xlabel("consensus grade")
    ax.set_ylabel(label)
    if np.all(np.asarray(qme_values) > 0):
        ax.set_yscale("log")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def gradcam_figure(model, images, grades, path, n, title_prefix):
    """Grad-CAM (layer `CAM_LAYER`) of the predicted grade on the first `n` slices."""
    import tensorflow as tf

    from shared.explain import attribution_maps
    from shared.report.figures import save_overlay_grid

    x = images[:n].astype(np.float32)
    probs = model.predict(x, verbose=0)
    pred = np.argmax(probs, axis=-1)
    maps = attribution_maps(model, tf.constant(x), layer_name=CAM_LAYER, targets=tf.constant(pred, tf.int32),
                            method="gradcam", upsample_to=x.shape[1:3], normalize=True)
    titles = [f"{title_prefix} true {g} pred {p + 1}" for g, p in zip(grades[:n], pred)]
    return save_overlay_grid(x[..., 0], np.asarray(maps), path, titles=titles, ncols=min(4, n))


def save_curves_figure(curves, path):
    """Validation kappa and loss per epoch, every unit's first member, one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for colour, (arm, by_unit) in zip(("tab:blue", "tab:orange", "tab:green"), curves.items()):
        for k, members in enumerate(by_unit.values()):
            m = members[0]
            epochs = np.arange(1, len(m["val_kappa"]) + 1)
            label = arm if k == 0 else None
            axes[0].plot(epochs, m["val_kappa"], color=colour, alpha=0.5, lw=1, label=label)
            axes[0].plot(m["best_epoch"], m["val_kappa"][m["best_epoch"] - 1], "o", color=colour, ms=3)
            axes[1].plot(epochs, m["val_loss"], color=colour, alpha=0.5, lw=1, label=label)
    axes[0].set_ylabel("validation kappa (scans)")
    axes[1].set_ylabel("validation loss (slices)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def _fmt(x):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def write_report(out, config, results, comparison, claims=None) -> Path:
    """Writes report.md from the run's `results`; `comparison` is the arms' comparison report,
    `claims` the claims document of `shared.study`, whose table opens the report."""
    from shared.study import claims_markdown

    r = results
    lines = [f"# HR-pQCT motion grading ({config.preset} preset)", ""]
    if claims is not None:
        lines.append(claims_markdown(claims))
    lines += [
        f"Cohort: {r['n_scans']} scans: {r['n_test']} held-out test scans (consensus grades 1-5: "
        f"{r['test_grade_counts']}), fixed for every unit, and a pool of {r['n_pool']} that each unit "
        f"splits again into training and validation scans; {config.model_size} x {config.model_size} "
        f"slices, {config.slices_per_scan} slices per scan, {config.n_projections} views over 180 degrees.", "",
        "Consensus grade counts (grades 1-5): "
        + "; ".join(f"{site}: {counts}" for site, counts in r["grade_counts"].items()), "",
        "## Operator agreement (simulated raters)", "", "| pair | quadratic weighted kappa |", "|---|---|"]
    ra = r["raters"]
    lines += [f"| {k[6:].replace('_', ' vs ')} | {_fmt(v)} |" for k, v in ra.items() if k.startswith("kappa")]
    by_site = ra.get("full_agreement_by_site", {})
    lines += ["", "The rater-vs-consensus kappas are the human benchmark the graders are held against.", "",
              "| agreement | simulated | reference |", "|---|---|---|",
              f"| pairwise disagreement (pairs of raters differing) | "
              f"{100 * ra['pairwise_disagreement_fraction']:.0f} % | up to 30 % (literature cited by the thesis) |",
              f"| full agreement, all scans | {100 * ra['full_agreement_fraction']:.0f} % | - |"]
    thesis_full = {"radius": "45.2 %", "tibia": "57 %"}
    lines += [f"| full agreement, {site} | {100 * v:.0f} % | {thesis_full.get(site, '-')} (thesis) |"
              for site, v in by_site.items()]
    lines += [""]
    metric_keys = ["accuracy", "kappa", "recall_grade1", "recall_grade2", "recall_grade3", "recall_grade4",
                   "recall_grade5", "rescan_sensitivity", "rescan_specificity"]
    lines += ["## Scan-level grading on the test scans", "",
              "| grader | " + " | ".join(metric_keys) + " | review fraction |",
              "|---" * (len(metric_keys) + 2) + "|"]
    for arm, item in r["arms"].items():
        m = item["mean"]
        lines.append(f"| {arm} (mean of {len(item['runs'])} ensembles) | "
                     + " | ".join(_fmt(m.get(k)) for k in metric_keys) + f" | {_fmt(m.get('review_fraction'))} |")
    if "qme" in r:
        q = r["qme"]["test"]
        lines.append("| QME_SSD thresholds (non-learned baseline) | "
                     + " | ".join(_fmt(q.get(k)) for k in metric_keys) + " | n/a |")
    if "test" in r["streak"]:
        st = r["streak"]["test"]
        lines.append("| ceiling: air-streak RMS thresholds | " + " | ".join(_fmt(st.get(k)) for k in metric_keys)
                     + " | n/a |")
    if "artefact_ceiling" in r:
        ac = r["artefact_ceiling"]["test"]
        lines.append("| ceiling: artefact_rms thresholds (what the simulated raters grade) | "
                     + " | ".join(_fmt(ac.get(k)) for k in metric_keys) + " | n/a |")
    if "motion_ceiling" in r:
        mc = r["motion_ceiling"]["test"]
        lines.append("| ceiling: true motion size thresholds | " + " | ".join(_fmt(mc.get(k)) for k in metric_keys)
                     + " | n/a |")
    trivial = r.get("trivial_test")
    if trivial:
        lines.append(f"| trivial: {trivial['accuracy']['name']} | {_fmt(trivial['accuracy']['value'])} | 0.000 | "
                     + " | ".join("-" for _ in metric_keys[2:-2])
                     + f" | {_fmt(trivial['rescan_sensitivity']['value'])} | - | - |")
    ops = r.get("operators_test")
    if ops:
        lines.append(f"| human benchmark: each rater vs the consensus of the others | - | "
                     f"{_fmt(ops['kappa_mean'])} | " + " | ".join("-" for _ in metric_keys[2:]) + " | - |")
    lines += ["", "The ceilings are not competitors: the artefact measure is what the simulated raters grade "
              "(through their perception noise), the air-streak statistic is built the way the simulator "
              "makes streaks, and the true motion size is not visible in a real scan. The human benchmark "
              "and H2 score each rater, and the network, against the consensus of the other raters."]
    if r["streak"].get("note"):
        lines += ["", f"Air-streak statistic {r['streak']['note']}."]
    if r["streak"].get("test_not_graded"):
        lines += ["", f"{r['streak']['test_not_graded']} test scan(s) without air around the limb are flagged, "
                      "not graded, by the air-streak statistic."]
    if "qme" in r:
        lines += ["", "## Quantitative motion estimates (Sode et al.)", "",
                  f"Spearman correlation with the consensus grade (all scans): QME_SSD "
                  f"rho = {r['qme']['spearman_qme_ssd']:.3f} (p = {r['qme']['spearman_qme_ssd_p']:.2g}), "
                  f"QME_NCC (deviation of NCC from 1) rho = {r['qme']['spearman_qme_ncc']:.3f} "
                  f"(p = {r['qme']['spearman_qme_ncc_p']:.2g}), QME_NCC as printed in the thesis' Eq. 2.2 "
                  f"rho = {r['qme']['spearman_qme_ncc_printed']:.3f}.",
                  "", "![QME vs grade](figures/qme_ssd_vs_grade.png)"]
    if "spearman" in r["streak"]:
        lines += ["", "## Streaks in the air around the limb", "",
                  f"Root mean square of the reconstruction where the smoothed slice is air that the scan holds "
                  f"(`air_streak_rms`; {r['streak']['scans_with_air']} of {r['n_scans']} scans show air), "
                  "median per consensus grade 1-5: "
                  + ", ".join(_fmt(v) for v in r["streak"]["median_per_grade"])
                  + f" / cm; Spearman with the consensus rho = {r['streak']['spearman']:.3f} "
                  f"(p = {r['streak']['spearman_p']:.2g})"
                  + (f", with the simulated motion size rho = {r['streak']['spearman_motion_size']:.3f}."
                     if "spearman_motion_size" in r["streak"] else ".")]
    if "artefact" in r:
        lines += ["", f"The simulated raters grade the artefact each reconstruction shows (RMS of the "
                      f"reconstruction minus the motion-free one): Spearman with the consensus "
                      f"{r['artefact']['spearman_consensus']:.3f}, with the motion size "
                      f"{r['artefact']['spearman_motion_size']:.3f}."]
    if "rescan" in r:
        lines += ["", "## Rescan decision (grade >= 4) on the test scans", "",
                  "| arm | positives / negatives | sensitivity (mean of units) | 95 % CI (unit 0, Wilson) | "
                  "specificity (mean of units) | 95 % CI (unit 0, Wilson) |", "|---|---|---|---|---|---|"]
        for arm, q in r["rescan"].items():
            sci, pci = q["sensitivity_unit0_ci95"], q["specificity_unit0_ci95"]
            lines.append(f"| {arm} | {q['positives']} / {q['negatives']} | {_fmt(q['sensitivity_mean'])} | "
                         f"{_fmt(sci[0])}-{_fmt(sci[1])} | {_fmt(q['specificity_mean'])} | "
                         f"{_fmt(pci[0])}-{_fmt(pci[1])} |")
    if "training" in r:
        t = r["training"]
        lines += ["", "## Training: equal budgets, selection on the validation kappa", "",
                  f"Both arms: {t['epochs']} epochs, patience {t['patience']}; the epoch kept is the "
                  f"{t['selection']}. Curves per unit and epoch: `training_curves.json` (and claims.json).", "",
                  "| arm | epochs run | selected epoch (mean, range) | selected at the cap | "
                  "late fall of the validation loss (mean, max) |", "|---|---|---|---|---|"]
        for arm in r["arms"]:
            b, e = t[f"{arm}_best_epoch"], t[f"{arm}_epochs_run"]
            fall = t.get(f"{arm}_val_loss_late_fall")
            lines.append(f"| {arm} | {e['min']}-{e['max']} | {b['mean']:.1f} ({b['min']}-{b['max']}) | {b['at_cap']} | "
                         + (f"{100 * fall['mean']:+.1f} %, {100 * fall['max']:+.1f} % |" if fall else "n/a |"))
        lines += ["", "![validation curves](figures/validation_curves.png)"]
    vote = r.get("vote")
    if vote and vote["groups"]:
        lines += ["", f"## Secondary endpoint: Walle's vote of {vote['vote_size']} networks", "",
                  f"The networks of {vote['vote_size']} consecutive units per arm grade the test scans together "
                  f"(slice votes, confidence rule {config.confidence_threshold:g}); {len(vote['groups'])} votes "
                  "per arm. Descriptive, no verdict.", "",
                  "| arm | kappa | accuracy | rescan sensitivity | rescan specificity | review share | "
                  "slices tied |", "|---|---|---|---|---|---|---|"]
        for arm, item in vote["arms"].items():
            m = item["mean"]
            lines.append(f"| {arm} | {_fmt(m.get('kappa'))} | {_fmt(m.get('accuracy'))} | "
                         f"{_fmt(m.get('rescan_sensitivity'))} | {_fmt(m.get('rescan_specificity'))} | "
                         f"{_fmt(m.get('review_fraction'))} | {_fmt(m.get('slice_tie_fraction'))} |")
        if "difference" in vote:
            first, second = vote.get("difference_of", ("baseline", "proposed"))
            lines += ["", f"{first.capitalize()} minus {second} per vote, kappa: "
                      + ", ".join(f"{d:+.3f}" for d in vote["difference"]["kappa"]) + "."]
    lines += ["", "## Figures", "", "![examples](figures/example_slices.png)", ""]
    for arm in r.get("confusion", {}):
        lines += [f"![confusion {arm}](figures/confusion_{arm}.png)",
                  f"![Grad-CAM {arm}](figures/gradcam_{arm}.png)", ""]
    see = ("One unit: no comparison over units." if comparison is None
           else f"See [comparison/report.md]({Path(comparison).relative_to(out)}).")
    lines += ["## Baseline vs proposed over units", "", see, "",
              f"Run time: {r['timing_s']['total']:.0f} s (data {r['timing_s']['data']:.0f} s).", ""]
    return write_text(out / "report.md", "\n".join(lines))
