"""A study's protocol, declared before anything trains, written with its SHA-256.

A protocol names the arms, the pairing unit (what one seed fixes for every arm: the
data split, the initial weights of shared parts, the batch order), the units that
will be run, the held-out test set, the hypotheses and the data gates. It is written
to `protocol.json` (canonical JSON) and hashed before the first model trains; the
claims a run reports carry that hash, so what was promised and what was found stand
side by side. A resumed run refuses a protocol that differs from the one on disk.

Example:
    >>> protocol = Protocol(
    ...     paper="lge_qa", preset="powered", arms=("baseline", "contrastive"),
    ...     pairing_unit="seed: split, initial encoder weights, batch order",
    ...     units=(0, 1, 2, 3, 4), test_set={"seed": 1000, "size": 200},
    ...     hypotheses=(Hypothesis(
    ...         id="H1", statement="contrastive pre-training raises F1",
    ...         endpoint="f1", arms=("contrastive", "baseline"), direction="greater",
    ...         sesoi=0.05),),
    ...     gates=(Gate(name="signal_auc", source="oracle", comparison=">=",
    ...                 threshold=0.7),))
    >>> sha = write_protocol(protocol, "runs/lge_qa/powered")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

from shared.io.atomic import write_json
from shared.tracking.runs import to_jsonable

DIRECTIONS = ("greater", "less", "two-sided", "equivalent")
PAIRED_TESTS = ("wilcoxon", "paired_t")
UNPAIRED_TESTS = ("mannwhitney", "welch")
GATE_SOURCES = ("data", "oracle", "baseline")
COMPARISONS = (">=", "<=", ">", "<")
PROTOCOL_FILE = "protocol.json"


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    """One claim of the paper, as it will be tested.

    The effect is `arms[0] - arms[1]` on the endpoint, per pairing unit when paired.

    Args:
        id: str. Short identifier ("H1").
        statement: str. The paper's claim, quoted or paraphrased with its location.
        endpoint: str. The metric compared (as the run records it).
        arms: (str, str). The two arms; the effect is the first minus the second.
        direction: str. "greater" (first above second), "less", "two-sided" (they
            differ) or "equivalent" (same within +-sesoi, tested with TOST).
        sesoi: float. Smallest effect of interest, in the endpoint's units (> 0). For
            "equivalent" it is the equivalence margin.
        test: str, default "wilcoxon". "wilcoxon" or "paired_t" (paired designs),
            "mannwhitney" or "welch" (independent groups). "equivalent" claims are
            tested with TOST: paired t for the paired tests, Welch for "welch".
        alpha: float, default 0.05.
        family: str, default "primary". Hypotheses of one family are Holm-corrected
            together.
        paper_value: str or float, optional. What the paper reports for this claim.
        sides: int, default 2. 1 tests a "greater" / "less" claim one-sided: the p of
            the test in the claimed direction, the 1 - 2 alpha interval (whose end on
            the claimed side is the one-sided 1 - alpha bound), the one-sided MDE; the
            design is sized the same way (`units_for_mde(alternative=direction)`).
    """

    id: str
    statement: str
    endpoint: str
    arms: tuple
    direction: str
    sesoi: float
    test: str = "wilcoxon"
    alpha: float = 0.05
    family: str = "primary"
    paper_value: object = None
    sides: int = 2

    @property
    def paired(self) -> bool:
        return self.test in PAIRED_TESTS

    @property
    def alternative(self) -> str:
        """SciPy's `alternative=` for this hypothesis' test."""
        return self.direction if self.sides == 1 else "two-sided"

    @property
    def ci_level(self) -> float:
        """The level of the interval the claim reports (0.95, or 1 - 2 alpha one-sided)."""
        return 1.0 - 2.0 * self.alpha if self.sides == 1 else 0.95

    def validate(self, arms) -> None:
        where = f"hypothesis {self.id!r}"
        if len(self.arms) != 2 or len(set(self.arms)) != 2:
            raise ValueError(f"{where}: field 'arms' must name two different arms, got "
                             f"{list(self.arms)}")
        unknown = [a for a in self.arms if a not in arms]
        if unknown:
            raise ValueError(f"{where}: field 'arms' names {unknown}, expected some of "
                             f"{list(arms)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"{where}: field 'direction' must be one of {DIRECTIONS}, got "
                             f"{self.direction!r}")
        if self.test not in PAIRED_TESTS + UNPAIRED_TESTS:
            raise ValueError(f"{where}: field 'test' must be one of "
                             f"{PAIRED_TESTS + UNPAIRED_TESTS}, got {self.test!r}")
        if self.direction == "equivalent" and self.test == "mannwhitney":
            raise ValueError(f"{where}: an 'equivalent' claim is tested with TOST on means; "
                             f"field 'test' must be 'wilcoxon', 'paired_t' or 'welch', got "
                             f"{self.test!r}")
        if not (isinstance(self.sesoi, (int, float)) and math.isfinite(self.sesoi)
                and self.sesoi > 0):
            raise ValueError(f"{where}: field 'sesoi' must be a positive number, got "
                             f"{self.sesoi!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"{where}: field 'alpha' must lie in (0, 1), got {self.alpha!r}")
        if self.sides not in (1, 2) or isinstance(self.sides, bool):
            raise ValueError(f"{where}: field 'sides' must be 1 or 2, got {self.sides!r}")
        if self.sides == 1 and self.direction not in ("greater", "less"):
            raise ValueError(f"{where}: field 'sides' is 1, which only a 'greater' or 'less' "
                             f"claim can be; got direction {self.direction!r}")


def _check_comparison(where, comparison, threshold) -> None:
    if comparison not in COMPARISONS:
        raise ValueError(f"{where}: field 'comparison' must be one of {COMPARISONS}, got "
                         f"{comparison!r}")
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ValueError(f"{where}: field 'threshold' must be a finite number, got "
                         f"{threshold!r}")


def _check_known(where, field, names, allowed) -> None:
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"{where}: field '{field}' names {unknown}, expected some of "
                         f"{list(allowed)}")


@dataclasses.dataclass(frozen=True)
class Gate:
    """A check computed from the data, an oracle feature or the baseline arm alone.

    A gate that fails makes the hypotheses it covers untestable: the arms are not
    compared on a design that cannot show the claim.

    Args:
        name: str. Identifier ("signal_auc").
        source: str. "data", "oracle" or "baseline"; never an arm being compared.
        comparison: str. How the value must relate to the threshold: ">=", "<=", ">", "<".
        threshold: float.
        description: str, default "". What is measured and why it must hold.
        hypotheses: tuple of str, default () (all). The hypotheses it covers.
    """

    name: str
    source: str
    comparison: str
    threshold: float
    description: str = ""
    hypotheses: tuple = ()

    def validate(self, hypothesis_ids) -> None:
        where = f"gate {self.name!r}"
        if self.source not in GATE_SOURCES:
            raise ValueError(f"{where}: field 'source' must be one of {GATE_SOURCES} (gates "
                             f"never use the arms being compared), got {self.source!r}")
        _check_comparison(where, self.comparison, self.threshold)
        _check_known(where, "hypotheses", self.hypotheses, hypothesis_ids)

    def passes(self, value) -> bool:
        """Whether `value` satisfies the gate; NaN or None never does."""
        if value is None or not math.isfinite(float(value)):
            return False
        return _compare(float(value), self.comparison, self.threshold)

    def covers(self, hypothesis_id: str) -> bool:
        return not self.hypotheses or hypothesis_id in self.hypotheses


CHECK_KINDS = ("learned", "not_collapsed", "stop_reachable")


@dataclasses.dataclass(frozen=True)
class ArmCheck:
    """A validity check of an arm, measured per unit on validation data only.

    An arm that did not learn, whose representation collapsed or whose stopping rule
    could not be reached answers nothing: a hypothesis naming an arm that fails a check
    on more than `max_failed_share` of its units is untestable.

    The checked quantity is `value - reference` when the run records a reference (the
    trivial predictor's validation value for "learned", the stopping target for
    "stop_reachable"), else `value`, compared with `threshold`.

    Args:
        name: str. Identifier ("learned_val_accuracy").
        kind: str. "learned" (the validation endpoint beats the trivial predictor by a
            margin), "not_collapsed" (e.g. mean pairwise cosine of embeddings on a fixed
            validation batch below a bound) or "stop_reachable" (the stopping criterion
            was reachable).
        comparison: str. ">=", "<=", ">" or "<".
        threshold: float. The margin or bound.
        arms: tuple of str, default () (every arm). The arms it applies to.
        max_failed_share: float in [0, 1), default 0. Share of units that may fail
            before the hypotheses naming the arm become untestable.
        description: str, default "".
    """

    name: str
    kind: str
    comparison: str
    threshold: float
    arms: tuple = ()
    max_failed_share: float = 0.0
    description: str = ""

    def validate(self, arms) -> None:
        where = f"arm check {self.name!r}"
        if self.kind not in CHECK_KINDS:
            raise ValueError(f"{where}: field 'kind' must be one of {CHECK_KINDS}, got "
                             f"{self.kind!r}")
        _check_comparison(where, self.comparison, self.threshold)
        _check_known(where, "arms", self.arms, arms)
        if not (isinstance(self.max_failed_share, (int, float))
                and 0 <= self.max_failed_share < 1):
            raise ValueError(f"{where}: field 'max_failed_share' must lie in [0, 1), got "
                             f"{self.max_failed_share!r}")

    def applies_to(self, arm: str) -> bool:
        return not self.arms or arm in self.arms

    def passes(self, value, reference=None) -> bool:
        """Whether one unit passes; a missing or non-finite value never does."""
        if value is None or not math.isfinite(float(value)):
            return False
        if reference is not None:
            if not math.isfinite(float(reference)):
                return False
            value = float(value) - float(reference)
        return _compare(float(value), self.comparison, self.threshold)


@dataclasses.dataclass(frozen=True)
class Headroom:
    """Room for a directional claim, from the data, an oracle and the baseline only.

    For a "greater" claim the room is `ceiling - max(baseline, shortcut)`, for a "less"
    claim `min(baseline, shortcut) - ceiling` (the ceiling is then the best attainable
    low value). It must be at least `multiple` times the hypothesis' smallest effect of
    interest, and the baseline must not sit at the endpoint's `bound` (specificity 1.0
    for "greater"): otherwise the claim is untestable (no headroom), whatever the arms do.

    Args:
        hypothesis: str. The hypothesis it covers (a "greater" or "less" claim).
        multiple: float > 0, default 1. Required room in SESOIs.
        bound: float, optional. The endpoint's bound on the claimed side.
        ceiling_source: str, default "oracle". "data" or "oracle".
        description: str, default "". What the ceiling, baseline and shortcut are.
    """

    hypothesis: str
    multiple: float = 1.0
    bound: object = None
    ceiling_source: str = "oracle"
    description: str = ""

    def validate(self, hypotheses) -> None:
        where = f"headroom of {self.hypothesis!r}"
        by_id = {h.id: h for h in hypotheses}
        if self.hypothesis not in by_id:
            raise ValueError(f"{where}: field 'hypothesis' names no declared hypothesis; "
                             f"expected one of {list(by_id)}")
        if by_id[self.hypothesis].direction not in ("greater", "less"):
            raise ValueError(f"{where}: field 'hypothesis' must name a 'greater' or 'less' "
                             f"claim, got direction {by_id[self.hypothesis].direction!r}")
        if not (isinstance(self.multiple, (int, float)) and math.isfinite(self.multiple)
                and self.multiple > 0):
            raise ValueError(f"{where}: field 'multiple' must be a positive number, got "
                             f"{self.multiple!r}")
        if self.ceiling_source not in ("data", "oracle"):
            raise ValueError(f"{where}: field 'ceiling_source' must be 'data' or 'oracle' "
                             f"(never an arm being compared), got {self.ceiling_source!r}")
        if self.bound is not None and not (isinstance(self.bound, (int, float))
                                           and math.isfinite(self.bound)):
            raise ValueError(f"{where}: field 'bound' must be a finite number or null, got "
                             f"{self.bound!r}")


def _compare(value: float, comparison: str, threshold: float) -> bool:
    return {">=": value >= threshold, "<=": value <= threshold,
            ">": value > threshold, "<": value < threshold}[comparison]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Everything a study promises before its first model trains.

    Args:
        paper: str. The paper package ("lge_qa").
        preset: str. The preset it runs ("powered").
        arms: tuple of str. Every arm that trains.
        pairing_unit: str. What one unit fixes for every arm (for example "seed: data
            split, initial weights of shared parts, batch order").
        units: tuple. The units that will be run (seeds or folds).
        test_set: dict. How the held-out test set is made: its own seed, its size;
            it is generated or split once and never used to choose anything.
        hypotheses: tuple of Hypothesis.
        gates: tuple of Gate, default ().
        training_sizes: tuple, default (). Levels of labelled training data when the
            claim is about limited data.
        deviations: tuple of str, default (). Where the design departs from the paper.
        validity: tuple of ArmCheck, default (). Per-arm, per-unit checks on validation
            data that an arm learned, did not collapse and could stop.
        headroom: tuple of Headroom, default (). Room between baseline and ceiling for
            directional claims.
        resampling: dict, optional. {"train_fraction": f, "test_fraction": g} when the
            units re-split one finite pool: paired t claims use the corrected resampled
            t (Nadeau-Bengio) with ratio g / f.
        design: str, default "". Names the condition when one paper runs several
            designs ("exp1", "low"); runs at other seeds of the same design combine.

    Fields left at their defaults are not written to `protocol.json`, so protocols
    declared before they existed keep their hash.
    """

    paper: str
    preset: str
    arms: tuple
    pairing_unit: str
    units: tuple
    test_set: dict
    hypotheses: tuple
    gates: tuple = ()
    training_sizes: tuple = ()
    deviations: tuple = ()
    validity: tuple = ()
    headroom: tuple = ()
    resampling: object = None
    design: str = ""

    def __post_init__(self):
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"protocol {self.paper!r}: field 'arms' must list at least two "
                             f"distinct arms, got {list(self.arms)}")
        if not self.units:
            raise ValueError(f"protocol {self.paper!r}: field 'units' is empty; expected the "
                             f"seeds or folds that will be run")
        if not self.hypotheses:
            raise ValueError(f"protocol {self.paper!r}: field 'hypotheses' is empty")
        ids = [h.id for h in self.hypotheses]
        if len(set(ids)) != len(ids):
            raise ValueError(f"protocol {self.paper!r}: hypothesis ids repeat: {ids}")
        for hypothesis in self.hypotheses:
            hypothesis.validate(self.arms)
        names = [g.name for g in self.gates]
        if len(set(names)) != len(names):
            raise ValueError(f"protocol {self.paper!r}: gate names repeat: {names}")
        for gate in self.gates:
            gate.validate(ids)
        checks = [c.name for c in self.validity]
        if len(set(checks)) != len(checks):
            raise ValueError(f"protocol {self.paper!r}: arm check names repeat: {checks}")
        for check in self.validity:
            check.validate(self.arms)
        for room in self.headroom:
            room.validate(self.hypotheses)
        if self.resampling is not None:
            from shared.stats.resampled import resampling_ratio

            if not isinstance(self.resampling, dict):
                raise ValueError(f"protocol {self.paper!r}: field 'resampling' must be "
                                 f"{{'train_fraction', 'test_fraction'}}, got {self.resampling!r}")
            try:
                resampling_ratio(self.resampling.get("train_fraction"),
                                 self.resampling.get("test_fraction"))
            except ValueError as err:
                raise ValueError(f"protocol {self.paper!r}: field 'resampling': {err}") from None

    def hypothesis(self, hypothesis_id: str) -> Hypothesis:
        for hypothesis in self.hypotheses:
            if hypothesis.id == hypothesis_id:
                return hypothesis
        raise KeyError(hypothesis_id)

    def gate(self, name: str) -> Gate:
        for gate in self.gates:
            if gate.name == name:
                return gate
        raise KeyError(name)

    @property
    def resampling_ratio(self) -> float:
        """n_test / n_train of the declared re-splits (0 when units do not share a pool)."""
        if self.resampling is None:
            return 0.0
        from shared.stats.resampled import resampling_ratio

        return resampling_ratio(self.resampling["train_fraction"],
                                self.resampling["test_fraction"])

    def checks_for(self, arm: str) -> list:
        return [c for c in self.validity if c.applies_to(arm)]

    def to_dict(self) -> dict:
        data = to_jsonable(self)
        for field, empty in _LATER_FIELDS.items():
            if data.get(field) == empty:
                del data[field]
        for hypothesis in data["hypotheses"]:
            if hypothesis.get("sides") == 2:
                del hypothesis["sides"]
        return data


# Fields added after protocols were first kept, with the value that means "not declared".
_LATER_FIELDS = {"validity": [], "headroom": [], "resampling": None, "design": ""}


def canonical_json(value, default=None) -> str:
    """The JSON text whose SHA-256 identifies a protocol (sorted keys, no spaces).

    Args:
        value: what to write (dataclasses and arrays through `to_jsonable`).
        default: callable, optional. How objects JSON cannot write are written
            (`json.dumps`'s `default`); None refuses them.
    """
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=default)


def protocol_sha256(protocol: Protocol) -> str:
    return hashlib.sha256(canonical_json(protocol.to_dict()).encode("utf-8")).hexdigest()


def design_dict(protocol_dict: dict) -> dict:
    """A protocol with what its seed draws taken out: the unit labels (their count stays)
    and the test set's seed. Runs of one design at different seeds share it."""
    data = json.loads(canonical_json(protocol_dict))
    data["units"] = len(data.get("units", []))
    if isinstance(data.get("test_set"), dict):
        data["test_set"] = {k: v for k, v in data["test_set"].items() if "seed" not in k}
    return data


def design_sha256(protocol) -> str:
    """SHA-256 of `design_dict` (canonical JSON): equal for runs of one design."""
    data = protocol.to_dict() if isinstance(protocol, Protocol) else protocol
    return hashlib.sha256(canonical_json(design_dict(data)).encode("utf-8")).hexdigest()


def write_protocol(protocol: Protocol, out_dir) -> str:
    """Writes `<out_dir>/protocol.json` and returns its SHA-256.

    The file holds the protocol and its hash. A run resumed in the same folder
    must declare the same protocol: a different one is refused, since its claims
    would no longer be the ones declared before training.

    Raises:
        ValueError: `protocol.json` exists and declares another protocol.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROTOCOL_FILE
    sha = protocol_sha256(protocol)
    if path.exists():
        previous = read_protocol(path)
        if previous["sha256"] != sha:
            raise ValueError(
                f"{path}: field 'sha256' is {previous['sha256'][:12]}..., this run declares "
                f"{sha[:12]}...; the protocol cannot change once a run has started (use "
                f"--overwrite or a new --out folder)")
        return sha
    write_json(path, {"protocol": protocol.to_dict(), "sha256": sha})
    return sha


def read_protocol(path) -> dict:
    """Reads a `protocol.json` and checks that its hash matches its content.

    Raises:
        ValueError: not JSON, fields missing, or a hash that does not match.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or "protocol" not in data or "sha256" not in data:
        raise ValueError(f"{path}: expected fields 'protocol' and 'sha256'")
    actual = hashlib.sha256(canonical_json(data["protocol"]).encode("utf-8")).hexdigest()
    if actual != data["sha256"]:
        raise ValueError(f"{path}: field 'sha256' does not match the protocol it holds "
                         f"(edited after it was written?)")
    return data
