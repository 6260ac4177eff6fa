"""From per-unit outcomes to one verdict per hypothesis.

Four verdicts:

* **reproduced**: Holm-adjusted p < alpha and the effect in the claimed direction
  (for "equivalent": the TOST p, Holm-adjusted, below alpha);
* **contradicted**: significant in the opposite direction, or the whole 95 % CI on
  the wrong side of the smallest effect of interest (below it for "greater", above
  its negative for "less", inside +-sesoi for "two-sided", outside +-sesoi for
  "equivalent"): the design rules the claimed effect out;
* **inconclusive**: neither; printed with the design's minimum detectable effect;
* **untestable**: a gate failed (named); the arms are not compared.
"""

from __future__ import annotations

import math

import numpy as np

from shared.stats.groups import holm_correction
from shared.stats.independent import compare_independent, mde_independent, tost_independent
from shared.stats.paired import compare_paired
from shared.stats.power import mde_paired, tost_paired

VERDICTS = ("reproduced", "contradicted", "inconclusive", "untestable")
MIN_UNITS = 3
# Below this many units a percentile bootstrap under-covers badly; the claims use the
# t-interval (paired) or the Welch interval (independent groups) instead.
MIN_BOOTSTRAP_UNITS = 10


def decide_verdict(direction, *, p_holm, effect, ci95, sesoi, alpha, mde=None, n=None,
                   failed_gates=()):
    """The verdict and a one-line note for one hypothesis.

    Args:
        direction: str. "greater", "less", "two-sided" or "equivalent".
        p_holm: float or None. Holm-adjusted p (the TOST p for "equivalent").
        effect: float or None. First arm minus second.
        ci95: (float, float) or None. 95 % CI of the effect.
        sesoi: float. Smallest effect of interest (equivalence margin), > 0.
        alpha: float.
        mde: float, optional. Minimum detectable effect at 80 % power.
        n: int, optional. Units (pairs, or the smaller group) behind the test.
        failed_gates: sequence of str. Names of the gates that failed.

    Returns:
        (verdict, note).
    """
    if failed_gates:
        return "untestable", "gate failed: " + ", ".join(failed_gates)
    if p_holm is None or effect is None or ci95 is None:
        return "inconclusive", (f"fewer than {MIN_UNITS} units" if n is not None and n < MIN_UNITS
                                else "no test result")
    low, high = float(ci95[0]), float(ci95[1])
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
            return "contradicted", (f"the whole 95 % CI lies short of the smallest effect of "
                                    f"interest {sesoi:g} in the claimed direction")
    elif direction == "two-sided":
        if significant:
            return "reproduced", "the arms differ"
        if -sesoi < low and high < sesoi:
            return "contradicted", f"the whole 95 % CI lies within +-{sesoi:g}"
    elif direction == "equivalent":
        if significant:
            return "reproduced", f"equivalent within +-{sesoi:g} (TOST)"
        if low > sesoi or high < -sesoi:
            return "contradicted", f"the whole 95 % CI lies outside +-{sesoi:g}"
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


def min_attainable_p(test, n_a, n_b=None) -> float:
    """The smallest two-sided p a rank test can give with these sizes (0 for t-tests).

    Wilcoxon signed-rank on n pairs: every difference of one sign, 2 / 2^n.
    Mann-Whitney on n_a and n_b values: complete separation, 2 / C(n_a + n_b, n_a).
    """
    if test == "wilcoxon":
        return min(1.0, 2.0 * 0.5 ** int(n_a))
    if test == "mannwhitney":
        return min(1.0, 2.0 / math.comb(int(n_a) + int(n_b), int(n_a)))
    return 0.0


def _test_one(hypothesis, a, b, *, seed):
    """Raw p, effect, CI and MDE of one hypothesis (no multiplicity correction)."""
    n = len(a) if hypothesis.paired else min(len(a), len(b))
    out = {"n": int(n), "effect": None, "ci95": None, "p": None, "mde": None, "note": None}
    if n < MIN_UNITS:
        return out
    floor = min_attainable_p(hypothesis.test, len(a), len(b))
    bootstrap = hypothesis.test in ("wilcoxon", "mannwhitney") and n >= MIN_BOOTSTRAP_UNITS
    if hypothesis.paired:
        result = compare_paired(a, b, test=hypothesis.test, seed=seed,
                                interval="bootstrap" if bootstrap else "t")
        diff = a - b
        sd = float(np.std(diff, ddof=1))
        out["mde"] = _finite(mde_paired(n, sd, alpha=hypothesis.alpha, test=hypothesis.test))
        p, note = result["p"], result.get("note")
        if hypothesis.direction == "equivalent":
            p = tost_paired(a, b, margin=hypothesis.sesoi, alpha=hypothesis.alpha)["p"]
            if np.all(diff == 0):  # the difference test's "p = 1" says nothing here
                note = "every paired difference is zero: the arms agree on every unit"
        out.update(effect=_finite(result["mean_difference"]), ci95=list(result["ci95"]), p=_finite(p),
                   note=note)
    else:
        result = compare_independent(a, b, test=hypothesis.test, seed=seed,
                                     interval="bootstrap" if bootstrap else "welch")
        out["mde"] = _finite(mde_independent(a, b, alpha=hypothesis.alpha))
        p = result["p"]
        if hypothesis.direction == "equivalent":
            p = tost_independent(a, b, margin=hypothesis.sesoi, alpha=hypothesis.alpha)["p"]
        out.update(effect=_finite(result["mean_difference"]), ci95=list(result["ci95"]),
                   p=_finite(p), note=result.get("note"))
    if floor >= hypothesis.alpha and hypothesis.direction != "equivalent":
        out["mde"] = None
        out["note"] = "; ".join(filter(None, [out["note"], (
            f"a two-sided {hypothesis.test} test on these {n} units cannot reach p < "
            f"{hypothesis.alpha:g} (smallest attainable p {floor:.3g}): more units are needed")]))
    return out


def evaluate_hypotheses(protocol, outcomes, *, gate_values=None, trivial=None, seed=0):
    """One claim per hypothesis of `protocol`, with its verdict.

    Args:
        protocol: shared.study.protocol.Protocol.
        outcomes: dict arm -> endpoint -> unit -> value. Paired hypotheses use the units
            both arms have; unpaired ones every value of each arm.
        gate_values: dict gate name -> measured value. A gate without a value fails.
        trivial: dict endpoint -> {"name": str, "value": float}. The trivial predictor
            (majority class, prior, uniform map) beside the endpoint.
        seed: int, default 0. Seed of the bootstrap CIs.

    Returns:
        (claims, gates): lists of dicts in the `claims.json` layout.
    """
    gate_values = {} if gate_values is None else dict(gate_values)
    trivial = {} if trivial is None else dict(trivial)
    gates = []
    for gate in protocol.gates:
        value = gate_values.get(gate.name)
        gates.append({"name": gate.name, "source": gate.source, "comparison": gate.comparison,
                      "value": _finite(value) if value is not None else None,
                      "threshold": float(gate.threshold), "passed": gate.passes(value),
                      "description": gate.description})
    failed = {g["name"] for g in gates if not g["passed"]}

    rows = []
    for hypothesis in protocol.hypotheses:
        failed_here = [g.name for g in protocol.gates if g.name in failed and g.covers(hypothesis.id)]
        if hypothesis.paired:
            a, b, _ = _paired_values(outcomes, hypothesis)
        else:
            a, b = (np.array(list(outcomes.get(arm, {}).get(hypothesis.endpoint, {}).values()),
                             float) for arm in hypothesis.arms)
        bad = [arm for arm, v in zip(hypothesis.arms, (a, b)) if not np.all(np.isfinite(v))]
        if bad:
            raise ValueError(f"outcomes: arm {bad[0]!r}, endpoint {hypothesis.endpoint!r} holds "
                             f"NaN or infinite values; expected finite numbers")
        result = {"n": int(len(a) if hypothesis.paired else min(len(a), len(b))), "effect": None,
                  "ci95": None, "p": None, "mde": None, "note": None}
        if not failed_here:
            result = _test_one(hypothesis, a, b, seed=seed)
        means = {arm: (_finite(np.mean(v)) if len(v) else None)
                 for arm, v in zip(hypothesis.arms, (a, b))}
        rows.append((hypothesis, failed_here, result, means))

    p_holm = {}
    for family in dict.fromkeys(h.family for h, *_ in rows):
        tested = [(h.id, r["p"]) for h, failed_here, r, _ in rows
                  if h.family == family and not failed_here and r["p"] is not None]
        if tested:
            for (hid, _), adjusted in zip(tested, holm_correction([p for _, p in tested])):
                p_holm[hid] = float(adjusted)

    claims = []
    for hypothesis, failed_here, result, means in rows:
        verdict, note = decide_verdict(
            hypothesis.direction, p_holm=p_holm.get(hypothesis.id), effect=result["effect"],
            ci95=result["ci95"], sesoi=hypothesis.sesoi, alpha=hypothesis.alpha,
            mde=result["mde"], n=result["n"], failed_gates=failed_here)
        if result.get("note"):
            note = f"{note}; {result['note']}"
        claims.append({
            "id": hypothesis.id, "statement": hypothesis.statement,
            "endpoint": hypothesis.endpoint, "arms": list(hypothesis.arms),
            "direction": hypothesis.direction, "paired": hypothesis.paired,
            "n": result["n"], "arm_means": means, "effect": result["effect"],
            "ci95": result["ci95"], "test": ("tost_" + hypothesis.test
                                             if hypothesis.direction == "equivalent"
                                             else hypothesis.test),
            "p": result["p"], "p_holm": p_holm.get(hypothesis.id), "alpha": hypothesis.alpha,
            "family": hypothesis.family, "mde": result["mde"], "sesoi": float(hypothesis.sesoi),
            "trivial": trivial.get(hypothesis.endpoint),
            "paper_value": hypothesis.paper_value, "verdict": verdict, "note": note,
        })
    return claims, gates
