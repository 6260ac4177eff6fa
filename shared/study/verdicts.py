"""From per-unit outcomes to one verdict per hypothesis.

Four verdicts:

* **reproduced**: Holm-adjusted p < alpha and the effect in the claimed direction
  (for "equivalent": the TOST p, Holm-adjusted, below alpha);
* **contradicted**: significant in the opposite direction, or the whole 95 % CI on
  the wrong side of the smallest effect of interest (below it for "greater", above
  its negative for "less", inside +-sesoi for "two-sided", outside +-sesoi for
  "equivalent"): the design rules the claimed effect out;
* **inconclusive**: neither; printed with the design's minimum detectable effect;
* **untestable**: a gate failed (named), an arm of the claim failed a declared validity
  check on more than its allowed share of units, or a directional claim has no room
  between its baseline and its ceiling; the verdict names why.

A hypothesis declared one-sided (`sides=1`) is tested in its claimed direction: its p
is the one-sided p, its interval the 1 - 2 alpha interval (whose end on the claimed side
is the one-sided 1 - alpha bound) and its MDE one-sided. When the protocol declares that
units re-split one pool, paired t claims use the corrected resampled t.
"""

from __future__ import annotations

import math

import numpy as np

from shared.stats.groups import holm_correction
from shared.stats.independent import compare_independent, mde_independent, tost_independent
from shared.stats.paired import compare_paired
from shared.stats.power import mde_paired, tost_paired
from shared.stats.resampled import corrected_paired_t

VERDICTS = ("reproduced", "contradicted", "inconclusive", "untestable")
MIN_UNITS = 3
# Below this many units a percentile bootstrap under-covers badly; the claims use the
# t-interval (paired) or the Welch interval (independent groups) instead.
MIN_BOOTSTRAP_UNITS = 10


def decide_verdict(direction, *, p_holm, effect, ci95, sesoi, alpha, mde=None, n=None,
                   failed_gates=(), untestable=(), ci_level=0.95):
    """The verdict and a one-line note for one hypothesis.

    Args:
        direction: str. "greater", "less", "two-sided" or "equivalent".
        p_holm: float or None. Holm-adjusted p (the TOST p for "equivalent").
        effect: float or None. First arm minus second.
        ci95: (float, float) or None. The CI of the effect at `ci_level`.
        sesoi: float. Smallest effect of interest (equivalence margin), > 0.
        alpha: float.
        mde: float, optional. Minimum detectable effect at 80 % power.
        n: int, optional. Units (pairs, or the smaller group) behind the test.
        failed_gates: sequence of str. Names of the gates that failed.
        untestable: sequence of str. Other reasons the claim cannot be tested (an arm
            that failed a validity check, no headroom), each a phrase.

    Returns:
        (verdict, note).
    """
    reasons = (["gate failed: " + ", ".join(failed_gates)] if failed_gates else []) \
        + list(untestable)
    if reasons:
        return "untestable", "; ".join(reasons)
    if p_holm is None or effect is None or ci95 is None:
        return "inconclusive", (f"fewer than {MIN_UNITS} units" if n is not None and n < MIN_UNITS
                                else "no test result")
    low, high = float(ci95[0]), float(ci95[1])
    ci = f"{ci_level:.0%} CI".replace("%", " %")
    significant = p_holm < alpha
    if direction in ("greater", "less"):
        sign = 1.0 if direction == "greater" else -1.0
        lo, hi = sorted((sign * low, sign * high))
        if significant and sign * effect > 0:
            note = "effect in the claimed direction"
            if hi < sesoi:
                note += f"; the whole CI lies below the smallest effect of interest {sesoi:g}"
            return "reproduced", note
        if significant and sign * effect < 0:
            return "contradicted", "significant in the opposite direction"
        if hi < sesoi:
            return "contradicted", (f"the whole {ci} lies short of the smallest effect of "
                                    f"interest {sesoi:g} in the claimed direction")
    elif direction == "two-sided":
        if significant:
            return "reproduced", "the arms differ"
        if -sesoi < low and high < sesoi:
            return "contradicted", f"the whole {ci} lies within +-{sesoi:g}"
    elif direction == "equivalent":
        if significant:
            return "reproduced", f"equivalent within +-{sesoi:g} (TOST)"
        if low > sesoi or high < -sesoi:
            return "contradicted", f"the whole {ci} lies outside +-{sesoi:g}"
    else:
        raise ValueError(f"direction must be one of greater, less, two-sided, equivalent; "
                         f"got {direction!r}")
    return "inconclusive", inconclusive_note(mde, n, sesoi)


def inconclusive_note(mde, n, sesoi) -> str:
    if mde is None or not math.isfinite(mde):
        return f"this design detects no difference (n = {n})"
    return (f"this design detects differences of {mde:.3g} or more (n = {n}, 80 % power); "
            f"the smallest effect of interest is {sesoi:g}")


def _finite(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _paired_values(outcomes, hypothesis):
    """The two arms' values on the units both have, in unit order."""
    first, second = (outcomes.get(arm, {}).get(hypothesis.endpoint, {}) for arm in hypothesis.arms)
    units = sorted(set(first) & set(second), key=str)
    return (np.array([first[u] for u in units], float),
            np.array([second[u] for u in units], float), units)


def min_attainable_p(test, n_a, n_b=None, sides=2) -> float:
    """The smallest p a rank test can give with these sizes (0 for t-tests).

    Wilcoxon signed-rank on n pairs: every difference of one sign, 2 / 2^n (one-sided
    1 / 2^n). Mann-Whitney on n_a and n_b values: complete separation,
    2 / C(n_a + n_b, n_a) (one-sided half of it).
    """
    if test == "wilcoxon":
        return min(1.0, sides * 0.5 ** int(n_a))
    if test == "mannwhitney":
        return min(1.0, sides / math.comb(int(n_a) + int(n_b), int(n_a)))
    return 0.0


def _test_one(hypothesis, a, b, *, seed, ratio=0.0):
    """Raw p, effect, CI and MDE of one hypothesis (no multiplicity correction).

    `ratio` > 0 (units re-split one pool) turns a paired t into the corrected
    resampled t."""
    n = len(a) if hypothesis.paired else min(len(a), len(b))
    out = {"n": int(n), "effect": None, "ci95": None, "p": None, "mde": None, "note": None,
           "test": hypothesis.test}
    if n < MIN_UNITS:
        return out
    alternative = hypothesis.alternative
    level = hypothesis.ci_level
    floor = min_attainable_p(hypothesis.test, len(a), len(b), sides=hypothesis.sides)
    bootstrap = hypothesis.test in ("wilcoxon", "mannwhitney") and n >= MIN_BOOTSTRAP_UNITS
    if hypothesis.paired:
        result = compare_paired(a, b, test=hypothesis.test, seed=seed, alternative=alternative,
                                level=level, interval="bootstrap" if bootstrap else "t")
        diff = a - b
        sd = float(np.std(diff, ddof=1))
        corrected = ratio > 0 and hypothesis.test == "paired_t"
        out["mde"] = _finite(mde_paired(n, sd, alpha=hypothesis.alpha, test=hypothesis.test,
                                        alternative=alternative,
                                        ratio=ratio if corrected else 0.0))
        p, note = result["p"], result.get("note")
        if corrected:
            nb = corrected_paired_t(a, b, ratio=ratio, alternative=alternative, level=level)
            p, result["ci95"], out["test"] = nb["p"], nb["ci"], "paired_t_corrected"
            out["resampling_ratio"] = float(ratio)
            note = "; ".join(filter(None, [note, (
                f"units re-split one pool: corrected resampled t (Nadeau-Bengio, "
                f"n_test / n_train = {ratio:.3g})")]))
        if hypothesis.direction == "equivalent":
            p = tost_paired(a, b, margin=hypothesis.sesoi, alpha=hypothesis.alpha)["p"]
            if np.all(diff == 0):  # the difference test's "p = 1" says nothing here
                note = "every paired difference is zero: the arms agree on every unit"
        out.update(effect=_finite(result["mean_difference"]), ci95=list(result["ci95"]), p=_finite(p),
                   note=note)
    else:
        result = compare_independent(a, b, test=hypothesis.test, seed=seed, level=level,
                                     alternative=alternative,
                                     interval="bootstrap" if bootstrap else "welch")
        out["mde"] = _finite(mde_independent(a, b, alpha=hypothesis.alpha,
                                             alternative=alternative))
        p = result["p"]
        if hypothesis.direction == "equivalent":
            p = tost_independent(a, b, margin=hypothesis.sesoi, alpha=hypothesis.alpha)["p"]
        out.update(effect=_finite(result["mean_difference"]), ci95=list(result["ci95"]),
                   p=_finite(p), note=result.get("note"))
    if floor >= hypothesis.alpha and hypothesis.direction != "equivalent":
        out["mde"] = None
        sided = "one-sided" if hypothesis.sides == 1 else "two-sided"
        out["note"] = "; ".join(filter(None, [out["note"], (
            f"a {sided} {hypothesis.test} test on these {n} units cannot reach p < "
            f"{hypothesis.alpha:g} (smallest attainable p {floor:.3g}): more units are needed")]))
    return out


def headroom_row(protocol, room, values) -> dict:
    """The headroom check of one hypothesis from its recorded ceiling, baseline, shortcut.

    Returns:
        dict with hypothesis, ceiling, baseline, shortcut, room, required (multiple x
        SESOI), bound, at_bound, passed and description.
    """
    hypothesis = protocol.hypothesis(room.hypothesis)
    values = values or {}
    ceiling, baseline, shortcut = (values.get(k) for k in ("ceiling", "baseline", "shortcut"))
    required = float(room.multiple) * float(hypothesis.sesoi)
    row = {"hypothesis": room.hypothesis, "ceiling": ceiling, "baseline": baseline,
           "shortcut": shortcut, "room": None, "required": required, "bound": room.bound,
           "at_bound": False, "passed": False, "ceiling_source": room.ceiling_source,
           "description": room.description}
    if ceiling is None or baseline is None:
        return row
    sign = 1.0 if hypothesis.direction == "greater" else -1.0
    reference = baseline if shortcut is None else (max(baseline, shortcut) if sign > 0
                                                   else min(baseline, shortcut))
    row["room"] = sign * (ceiling - reference)
    if room.bound is not None:
        row["at_bound"] = bool(sign * (baseline - float(room.bound)) >= -1e-12)
    row["passed"] = bool(row["room"] >= required - 1e-12 and not row["at_bound"])
    return row


def _headroom_reason(row) -> str:
    if row["ceiling"] is None or row["baseline"] is None:
        return "no headroom measured (ceiling or baseline missing)"
    if row["at_bound"]:
        return (f"no headroom: the baseline ({row['baseline']:.3g}) sits at the endpoint's "
                f"bound {row['bound']:g}")
    against = "baseline" if row["shortcut"] is None else "max(baseline, shortcut)"
    return (f"no headroom: ceiling - {against} = {row['room']:.3g} < {row['required']:.3g} "
            f"(the required multiple of the smallest effect of interest)")


def validity_summary(protocol, validity, arms, units) -> list:
    """Per declared check and arm of a hypothesis: units measured, failed, passed.

    A unit that recorded an outcome but no value for a check counts as failed (not
    measured), as a gate without a value does.
    """
    rows = []
    for arm in arms:
        for check in protocol.checks_for(arm):
            recorded = validity.get(check.name, {}).get(arm, {})
            failed = [u for u in units if not (recorded.get(u) or {}).get("passed", False)]
            share = len(failed) / len(units) if units else 0.0
            rows.append({"check": check.name, "kind": check.kind, "arm": arm,
                         "units": len(units), "failed": len(failed),
                         "not_measured": sum(1 for u in units if u not in recorded),
                         "max_failed_share": float(check.max_failed_share),
                         "passed": bool(units) and share <= check.max_failed_share + 1e-12})
    return rows


def _validity_reason(row) -> str:
    missing = f", {row['not_measured']} not measured" if row["not_measured"] else ""
    return (f"arm {row['arm']!r} failed {row['check']!r} ({row['kind']}) on {row['failed']} of "
            f"{row['units']} units{missing}; at most {row['max_failed_share']:.0%} may fail")


def _unit_values(outcomes, hypothesis):
    return {arm: [[unit, float(value)] for unit, value in
                  sorted(outcomes.get(arm, {}).get(hypothesis.endpoint, {}).items(),
                         key=lambda item: str(item[0]))]
            for arm in hypothesis.arms}


def evaluate_study(protocol, outcomes, *, gate_values=None, trivial=None, seed=0,
                   validity=None, headroom_values=None) -> dict:
    """One claim per hypothesis of `protocol`, with its verdict and what it rests on.

    Args:
        protocol: shared.study.protocol.Protocol.
        outcomes: dict arm -> endpoint -> unit -> value. Paired hypotheses use the units
            both arms have; unpaired ones every value of each arm.
        gate_values: dict gate name -> measured value. A gate without a value fails.
        trivial: dict endpoint -> {"name": str, "value": float}. The trivial predictor
            (majority class, prior, uniform map) beside the endpoint.
        seed: int, default 0. Seed of the bootstrap CIs.
        validity: dict check -> arm -> unit -> {"value", "reference", "passed"}, as
            `Study.record_validity` keeps it.
        headroom_values: dict hypothesis id -> {"ceiling", "baseline", "shortcut"}.

    Returns:
        dict with `claims`, `gates` and `headroom` (lists in the `claims.json` layout).

    Failed units are not dropped: a unit where an arm failed a check stays in the test as
    measured (dropping it would choose units by an arm's outcome), and the claim says
    how many failed; beyond the declared share the claim is untestable.
    """
    gate_values = {} if gate_values is None else dict(gate_values)
    trivial = {} if trivial is None else dict(trivial)
    validity = {} if validity is None else validity
    headroom_values = {} if headroom_values is None else headroom_values
    gates = []
    for gate in protocol.gates:
        value = gate_values.get(gate.name)
        gates.append({"name": gate.name, "source": gate.source, "comparison": gate.comparison,
                      "value": _finite(value) if value is not None else None,
                      "threshold": float(gate.threshold), "passed": gate.passes(value),
                      "description": gate.description})
    failed = {g["name"] for g in gates if not g["passed"]}
    headroom = [headroom_row(protocol, room, headroom_values.get(room.hypothesis))
                for room in protocol.headroom]
    ratio = protocol.resampling_ratio

    rows = []
    for hypothesis in protocol.hypotheses:
        failed_here = [g.name for g in protocol.gates if g.name in failed and g.covers(hypothesis.id)]
        if hypothesis.paired:
            a, b, units = _paired_values(outcomes, hypothesis)
        else:
            a, b = (np.array(list(outcomes.get(arm, {}).get(hypothesis.endpoint, {}).values()),
                             float) for arm in hypothesis.arms)
            units = sorted({u for arm in hypothesis.arms
                            for u in outcomes.get(arm, {}).get(hypothesis.endpoint, {})}, key=str)
        bad = [arm for arm, v in zip(hypothesis.arms, (a, b)) if not np.all(np.isfinite(v))]
        if bad:
            raise ValueError(f"outcomes: arm {bad[0]!r}, endpoint {hypothesis.endpoint!r} holds "
                             f"NaN or infinite values; expected finite numbers")
        checks = validity_summary(protocol, validity, hypothesis.arms, units) \
            if protocol.validity and not failed_here else []
        reasons = [_validity_reason(c) for c in checks if not c["passed"]]
        reasons += [_headroom_reason(h) for h in headroom
                    if h["hypothesis"] == hypothesis.id and not h["passed"]]
        result = {"n": int(len(a) if hypothesis.paired else min(len(a), len(b))), "effect": None,
                  "ci95": None, "p": None, "mde": None, "note": None, "test": hypothesis.test}
        if not failed_here:
            result = _test_one(hypothesis, a, b, seed=seed, ratio=ratio)
        means = {arm: (_finite(np.mean(v)) if len(v) else None)
                 for arm, v in zip(hypothesis.arms, (a, b))}
        rows.append((hypothesis, failed_here, reasons, checks, result, means))

    p_holm = {}
    for family in dict.fromkeys(h.family for h, *_ in rows):
        tested = [(h.id, r["p"]) for h, failed_here, reasons, _, r, _ in rows
                  if h.family == family and not failed_here and not reasons and r["p"] is not None]
        if tested:
            for (hid, _), adjusted in zip(tested, holm_correction([p for _, p in tested])):
                p_holm[hid] = float(adjusted)

    claims = []
    for hypothesis, failed_here, reasons, checks, result, means in rows:
        verdict, note = decide_verdict(
            hypothesis.direction, p_holm=p_holm.get(hypothesis.id), effect=result["effect"],
            ci95=result["ci95"], sesoi=hypothesis.sesoi, alpha=hypothesis.alpha,
            mde=result["mde"], n=result["n"], failed_gates=failed_here, untestable=reasons,
            ci_level=hypothesis.ci_level)
        if result.get("note"):
            note = f"{note}; {result['note']}"
        partial = [c for c in checks if c["passed"] and c["failed"]]
        if partial:
            note += "; " + "; ".join(
                f"arm {c['arm']!r} failed {c['check']!r} on {c['failed']} of {c['units']} units "
                f"(kept in the test as measured)" for c in partial)
        test = result.get("test", hypothesis.test)
        claims.append({
            "id": hypothesis.id, "statement": hypothesis.statement,
            "endpoint": hypothesis.endpoint, "arms": list(hypothesis.arms),
            "direction": hypothesis.direction, "paired": hypothesis.paired,
            "sides": hypothesis.sides, "ci_level": hypothesis.ci_level,
            "n": result["n"], "arm_means": means, "effect": result["effect"],
            "ci95": result["ci95"], "test": ("tost_" + test
                                             if hypothesis.direction == "equivalent" else test),
            "p": result["p"], "p_holm": p_holm.get(hypothesis.id), "alpha": hypothesis.alpha,
            "family": hypothesis.family, "mde": result["mde"], "sesoi": float(hypothesis.sesoi),
            "trivial": trivial.get(hypothesis.endpoint),
            "paper_value": hypothesis.paper_value, "verdict": verdict, "note": note,
            "untestable_because": reasons, "validity": checks,
            "unit_values": _unit_values(outcomes, hypothesis),
            **({"resampling_ratio": result["resampling_ratio"]}
               if "resampling_ratio" in result else {}),
        })
    return {"claims": claims, "gates": gates, "headroom": headroom}


def evaluate_hypotheses(protocol, outcomes, *, gate_values=None, trivial=None, seed=0):
    """`evaluate_study` without validity or headroom records: (claims, gates)."""
    result = evaluate_study(protocol, outcomes, gate_values=gate_values, trivial=trivial,
                            seed=seed)
    return result["claims"], result["gates"]
