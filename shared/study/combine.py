"""Replications combined: one line per claim across runs of one design at other seeds.

Runs of one design (the same paper, preset, design name, hypotheses, gates and
deviations; their protocols differ only in the seed and what it draws) are independent
replications. The rule, declared in docs/studies.md before it was applied to any kept
run:

* **Which runs**: runs are grouped by paper, preset and design name (the protocol's
  `design`; for kept files written before it, the part of the file name between
  `<paper>_<preset>_` and `_seed<k>`). Inside a group every declared field must agree
  (or the protocols' `design_sha256`, where both runs carry it), and no seed may repeat;
  otherwise the combination is refused, naming the file and the field.
* **The combined test** pools every unit of every run, stratified by run
  (`shared.stats.stratified`): paired t claims, and the effect and interval of every
  paired claim, use the stratified paired t (run-specific levels, pooled within-run
  variance, N - K df; Nadeau-Bengio-corrected per run where the run re-split one pool);
  Wilcoxon claims take their p from the stratified signed-rank test; equivalence claims
  the stratified TOST. A one-sided claim stays one-sided. Holm corrects the combined p
  within each family, as in a single run.
* **Kept files without per-unit values**: each run's mean difference and SD are
  recovered exactly from its own effect and t-interval (the interval every paired t
  claim, and every claim on fewer than 10 units, reports). Where a run's interval was a
  bootstrap interval the units cannot be recovered and the line says "not combined".
* **Untestable anywhere, untestable combined**: if the claim was untestable in any run
  (a gate, an arm's validity, no headroom), the combined claim is untestable: a design
  that fails its checks at one seed is not rescued by another.
* **Agreement**: "k of m runs agree" counts the runs whose own verdict equals the
  combined one.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from scipy import stats

from shared.stats.groups import holm_correction
from shared.stats.power import mde_t
from shared.stats.stratified import stratified_paired_t, stratified_signed_rank
from shared.study.verdicts import MIN_BOOTSTRAP_UNITS, decide_verdict, inconclusive_note

DECLARED_CLAIM_FIELDS = ("endpoint", "arms", "direction", "test", "sesoi", "alpha", "family",
                         "sides")
DECLARED_GATE_FIELDS = ("name", "comparison", "threshold")


def design_name(document, label=None) -> str:
    """The run's design name: the protocol's, else the kept file name's middle part."""
    if document.get("design") is not None:
        return document["design"]
    if label:
        match = re.fullmatch(re.escape(f"{document['paper']}_{document['preset']}")
                             + r"(?:_(.+))?_seed\d+", label)
        if match:
            return match.group(1) or ""
    return ""


def _declared(document) -> dict:
    """field path -> declared value, for comparing the designs of two runs."""
    out = {"deviations": list(document["deviations"])}
    for claim in document["claims"]:
        for field in DECLARED_CLAIM_FIELDS:
            default = 2 if field == "sides" else None
            out[f"claims/{claim['id']}/{field}"] = claim.get(field, default)
    out["claims"] = [c["id"] for c in document["claims"]]
    for gate in document["gates"]:
        for field in DECLARED_GATE_FIELDS:
            out[f"gates/{gate['name']}/{field}"] = gate.get(field)
    out["gates"] = [g["name"] for g in document["gates"]]
    return out


def group_runs(documents, sources, strict=True) -> list:
    """Runs grouped by design, checked.

    Args:
        documents: list of claims documents.
        sources: list of str, one per document: its file (named in errors) or label.
        strict: bool, default True. Raise on a group that cannot be combined; False:
            return the reason with the group instead (its runs are shown, not combined).

    Returns:
        list of (key, [index, ...]) in the order groups first appear; with
        `strict=False`, (key, [index, ...], reason or None).

    Raises:
        ValueError: (strict) two runs of one group that declare different designs, or
            share a seed; one line naming the file and the field.
    """
    checked = []
    for key, members in _grouped(documents, sources):
        try:
            _check_group(documents, sources, members)
        except ValueError as err:
            if strict:
                raise
            checked.append((key, members, str(err)))
            continue
        checked.append((key, members, None))
    return [(key, members) for key, members, _ in checked] if strict else checked


def _grouped(documents, sources) -> list:
    groups: dict = {}
    for k, (doc, source) in enumerate(zip(documents, sources)):
        key = (doc["paper"], doc["preset"], design_name(doc, Path(str(source)).stem
                                                       if str(source).endswith(".json")
                                                       and Path(str(source)).name != "claims.json"
                                                       else None))
        groups.setdefault(key, []).append(k)
    return list(groups.items())


def _check_group(documents, sources, members) -> None:
    """Raises ValueError when the runs of one group cannot be combined."""
    first = members[0]
    reference = _declared(documents[first])
    seeds = {documents[first]["seed"]: first}
    for k in members[1:]:
        doc = documents[k]
        if doc["seed"] in seeds:
            raise ValueError(f"{sources[k]}: field 'seed': {doc['seed']} is also the seed of "
                             f"{sources[seeds[doc['seed']]]}; replications combine runs at "
                             f"different seeds")
        seeds[doc["seed"]] = k
        both = documents[first].get("design_sha256"), doc.get("design_sha256")
        if None not in both and both[0] != both[1]:
            raise ValueError(f"{sources[k]}: field 'design_sha256': {both[1][:12]}... differs "
                             f"from {sources[first]} ({both[0][:12]}...); --combine needs runs "
                             f"of one design")
        declared = _declared(doc)
        for field in list(reference) + [f for f in declared if f not in reference]:
            if reference.get(field) != declared.get(field):
                raise ValueError(f"{sources[k]}: field '{field}': {declared.get(field)!r} "
                                 f"differs from {sources[first]} ({reference.get(field)!r}); "
                                 f"--combine needs runs of one design")


def _run_stratum(claim):
    """(differences or summary dict, how they were obtained) of one run's claim."""
    values = claim.get("unit_values")
    first, second = claim["arms"]
    if values and claim["paired"]:
        a = dict((str(u), v) for u, v in values.get(first, []))
        b = dict((str(u), v) for u, v in values.get(second, []))
        units = sorted(set(a) & set(b))
        return np.array([a[u] - b[u] for u in units], float), "unit values"
    if claim["effect"] is None or claim["ci95"] is None or claim["n"] < 2:
        return None, "no test result"
    t_interval = claim["test"] in ("paired_t", "tost_paired_t") or claim["n"] < MIN_BOOTSTRAP_UNITS
    if not claim["paired"] or not t_interval:
        return None, "per-unit values absent and the run's interval is a bootstrap interval"
    level = claim.get("ci_level", 0.95)
    half = (claim["ci95"][1] - claim["ci95"][0]) / 2.0
    n = int(claim["n"])
    sd = half / stats.t.ppf(0.5 + level / 2.0, n - 1) * math.sqrt(n)
    return {"n": n, "mean": float(claim["effect"]), "sd": float(sd)}, "recovered from each run's t-interval"


def _mde(result, alpha, alternative):
    sd, se = result["sd_pooled"], result["se"]
    if not sd or not se:
        return None
    return mde_t(sd, (sd / se) ** 2, float(result["df"]), alpha=alpha, power=0.8, alternative=alternative)


def combine_claim(claims, labels) -> dict:
    """The combined result of one claim over its runs (before Holm)."""
    first = claims[0]
    sides = first.get("sides", 2)
    alternative = first["direction"] if sides == 1 else "two-sided"
    level = 1.0 - 2.0 * first["alpha"] if sides == 1 else 0.95
    out = {"id": first["id"], "statement": first["statement"], "endpoint": first["endpoint"],
           "arms": list(first["arms"]), "direction": first["direction"], "sides": sides,
           "family": first.get("family", "primary"), "alpha": first.get("alpha", 0.05),
           "sesoi": first["sesoi"], "trivial": first.get("trivial"),
           "paper_value": first.get("paper_value"), "runs": len(claims), "labels": list(labels),
           "run_verdicts": [c["verdict"] for c in claims], "n": sum(c["n"] for c in claims),
           "effect": None, "ci95": None, "ci_level": level, "p": None, "mde": None,
           "test": None, "source": None, "untestable_because": []}
    untestable = [f"{label}: {c.get('note') or 'untestable'}"
                  for c, label in zip(claims, labels) if c["verdict"] == "untestable"]
    if untestable:
        out["untestable_because"] = [f"untestable in {len(untestable)} of {len(claims)} runs ("
                                     + "; ".join(untestable) + ")"]
        return out
    strata, how = zip(*(_run_stratum(c) for c in claims))
    if any(s is None for s in strata):
        out["source"] = next(h for s, h in zip(strata, how) if s is None)
        return out
    out["source"] = "unit values" if all(h == "unit values" for h in how) else \
        "recovered from each run's t-interval"
    ratios = [c.get("resampling_ratio", 0.0) or 0.0 for c in claims]
    margin = first["sesoi"] if first["direction"] == "equivalent" else None
    pooled = stratified_paired_t(list(strata), alternative=alternative, level=level,
                                 ratios=ratios, margin=margin)
    out.update(effect=pooled["effect"], ci95=pooled["ci"], n=pooled["n"],
               mde=None if margin is not None else _mde(pooled, out["alpha"], alternative))
    if margin is not None:
        out.update(p=pooled["p_tost"], test="stratified_tost_paired_t")
    elif first["test"].startswith("wilcoxon") and all(h == "unit values" for h in how):
        ranks = stratified_signed_rank(list(strata), alternative=alternative)
        out.update(p=ranks["p"], test="stratified_signed_rank")
    else:
        out.update(p=pooled["p"], test="stratified_paired_t")
    return out


def _not_combinable(documents, members, claim_id, problem) -> dict:
    """The combined line of a claim whose runs cannot be combined: no test, the reason."""
    first = next(c for c in documents[members[0]]["claims"] if c["id"] == claim_id)
    return {"id": claim_id, "statement": first["statement"], "endpoint": first["endpoint"],
            "arms": list(first["arms"]), "direction": first["direction"],
            "sides": first.get("sides", 2), "family": first.get("family", "primary"),
            "alpha": first.get("alpha", 0.05), "sesoi": first["sesoi"],
            "trivial": first.get("trivial"), "paper_value": first.get("paper_value"),
            "runs": len(members), "labels": [], "run_verdicts": [],
            "n": sum(next(c for c in documents[k]["claims"] if c["id"] == claim_id)["n"] for k in members),
            "effect": None,
            "ci95": None, "ci_level": 0.95, "p": None, "p_holm": None, "mde": None,
            "test": None, "source": None, "untestable_because": [], "verdict": None, "agree": 0,
            "note": f"not combined: {problem}", "why_not": "not one design"}


def combine_documents(documents, sources, strict=True) -> list:
    """One combined line per claim and design group, with its verdict.

    Args:
        documents: list of claims documents.
        sources: list of str (file names or labels), named in errors and lines.

        strict: bool, default True. Refuse runs grouped as one design that declare
            different designs (ValueError naming the file and field); False: show such a
            group's runs with a combined line that says why they are not combined.

    Returns:
        list of dicts, one per group: {"paper", "preset", "design", "members": [index],
        "claims": [combined claim]}; a combined claim holds the combined effect, CI,
        p, p_holm, MDE, verdict (None when the runs cannot be combined), note and
        `agree` (runs whose verdict equals the combined one).
    """
    out = []
    for (paper, preset, design), members, problem in group_runs(documents, sources, strict=False):
        if problem is not None and strict:
            raise ValueError(problem)
        ids = [c["id"] for c in documents[members[0]]["claims"]]
        if problem is not None:  # shown run by run, with the reason on the combined line
            out.append({"paper": paper, "preset": preset, "design": design, "members": members,
                        "claims": [_not_combinable(documents, members, claim_id, problem)
                                   for claim_id in ids]})
            continue
        combined = []
        for claim_id in ids:
            claims = [next(c for c in documents[k]["claims"] if c["id"] == claim_id)
                      for k in members]
            combined.append(combine_claim(claims, [str(sources[k]) for k in members]))
        for family in dict.fromkeys(c["family"] for c in combined):
            tested = [c for c in combined if c["family"] == family and c["p"] is not None
                      and not c["untestable_because"]]
            for claim, adjusted in zip(tested, holm_correction([c["p"] for c in tested])):
                claim["p_holm"] = float(adjusted)
        for claim in combined:
            claim.setdefault("p_holm", None)
            if claim["p"] is None and not claim["untestable_because"]:
                claim.update(verdict=None, agree=0,
                             note=f"not combined: {claim['source'] or 'no test result'}")
                continue
            verdict, note = decide_verdict(
                claim["direction"], p_holm=claim["p_holm"], effect=claim["effect"],
                ci95=claim["ci95"], sesoi=claim["sesoi"], alpha=claim["alpha"], mde=claim["mde"],
                n=claim["n"], untestable=claim["untestable_because"], ci_level=claim["ci_level"])
            if verdict == "inconclusive" and claim["mde"] is not None:
                note = inconclusive_note(claim["mde"], claim["n"], claim["sesoi"])
            agree = sum(v == verdict for v in claim["run_verdicts"])
            claim.update(verdict=verdict, agree=agree,
                         note=f"{note}; {claim['test']} over {claim['n']} units of "
                              f"{claim['runs']} runs ({claim['source']})"
                         if claim["test"] else note)
        out.append({"paper": paper, "preset": preset, "design": design, "members": members,
                    "claims": combined})
    return out
