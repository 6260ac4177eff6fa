"""A study run: protocol first, then gates, outcomes per arm and unit, then claims.

    study = Study(protocol, out_dir)          # writes protocol.json + SHA-256 now
    study.record_gate("signal_auc", 0.81)     # from the data / an oracle / the baseline
    if study.gates_passed():
        for seed in protocol.units:
            ... train every arm on the same split, initial weights, batch order ...
            study.record(arm, seed, {"f1": 0.74, "specificity": 0.6})
    document = study.finish(seed=0, trivial={...})

`finish` writes `claims.json` (validated against the schema), stamped with the source
revision read when the protocol was written: the code that trained, not whatever was
checked out by the time the run ended. Hypotheses covered by a
failed gate are reported as untestable and their arms are not compared.

What makes a comparison answerable is recorded beside the outcomes:

    study.set_data(synthetic_data("lge_qa.phantom.make_cohort", settings))
    study.record_validity("baseline", seed, "learned", val_auc, reference=0.5)
    study.record_headroom("H1", ceiling=oracle_auc, baseline=baseline_gate_auc)

An arm that fails a declared check on more than its allowed share of units, or a
directional claim without room between baseline and ceiling, makes the hypotheses it
touches untestable. The per-unit checks are kept in `arm_validity.json` as they come.
"""

from __future__ import annotations

import math
from pathlib import Path

from shared.io.atomic import write_json
from shared.study.claims import build_claims, write_claims
from shared.study.protocol import Protocol, design_sha256, write_protocol
from shared.study.provenance import provenance_block
from shared.study.verdicts import evaluate_study
from shared.tracking.runs import git_revision

VALIDITY_FILE = "arm_validity.json"


class Study:
    """Collects what a run measures under a protocol written before training.

    Args:
        protocol: Protocol.
        out_dir: str or Path. The run folder; `protocol.json` is written at once.
        allow_dirty: bool, default False. Recorded in the claims: the user allowed a
            `powered` / `paper` run on a modified tree (the CLI refuses one otherwise,
            `shared.study.provenance.check_clean_tree`).

    Attributes:
        revision: the source revision (`git_revision()`) when the protocol was written.
    """

    def __init__(self, protocol: Protocol, out_dir, *, allow_dirty: bool = False):
        self.protocol = protocol
        self.out_dir = Path(out_dir)
        self.protocol_sha256 = write_protocol(protocol, self.out_dir)
        self.revision = git_revision()
        self.allow_dirty = bool(allow_dirty)
        self.data = None
        self.gate_values: dict = {}
        self.outcomes: dict = {arm: {} for arm in protocol.arms}
        self.validity: dict = {}
        self.headroom_values: dict = {}

    def set_data(self, block: dict) -> None:
        """Where the data came from: `shared.study.provenance.synthetic_data(...)` or
        `user_data(...)`."""
        if not isinstance(block, dict) or block.get("source") not in ("synthetic", "user"):
            raise ValueError(f"data: expected a block with source 'synthetic' or 'user', got "
                             f"{block!r}")
        self.data = dict(block)

    def record_validity(self, arm: str, unit, check: str, value, *, reference=None) -> bool:
        """Records one declared arm check at one unit, on validation data; returns whether
        it passes. Written to `arm_validity.json` at once.

        Args:
            arm: str. A declared arm the check applies to.
            unit: a declared unit.
            check: str. The `ArmCheck` name.
            value: float. The measured value (validation endpoint, mean pairwise cosine,
                best value of the stopping criterion); None or NaN fails.
            reference: float, optional. What the value is compared against (the trivial
                predictor's validation value, the stopping target).
        """
        spec = next((c for c in self.protocol.validity if c.name == check), None)
        if spec is None:
            raise ValueError(f"check {check!r} is not declared by the protocol; expected one of "
                             f"{[c.name for c in self.protocol.validity]}")
        if arm not in self.outcomes or not spec.applies_to(arm):
            raise ValueError(f"check {check!r}: arm {arm!r} is not one it applies to")
        if unit not in self.protocol.units:
            raise ValueError(f"unit {unit!r} is not declared by the protocol; expected one of "
                             f"{list(self.protocol.units)}")
        value = None if value is None or not math.isfinite(float(value)) else float(value)
        reference = None if reference is None else float(reference)
        passed = spec.passes(value, reference)
        self.validity.setdefault(check, {}).setdefault(arm, {})[unit] = {
            "value": value, "reference": reference, "passed": passed}
        write_json(self.out_dir / VALIDITY_FILE, self.validity_rows())
        return passed

    def validity_rows(self) -> list:
        """The per-unit arm checks, one row each, in the claims' layout."""
        return [{"check": check, "arm": arm, "unit": unit, **row}
                for check, by_arm in self.validity.items() for arm, by_unit in by_arm.items()
                for unit, row in by_unit.items()]

    def record_headroom(self, hypothesis_id: str, *, ceiling, baseline, shortcut=None) -> bool:
        """Records the ceiling (data / oracle), the baseline and an optional shortcut of a
        declared headroom check; returns whether the claim has room."""
        room = next((h for h in self.protocol.headroom if h.hypothesis == hypothesis_id), None)
        if room is None:
            raise ValueError(f"hypothesis {hypothesis_id!r} declares no headroom check")
        self.headroom_values[hypothesis_id] = {
            "ceiling": None if ceiling is None else float(ceiling),
            "baseline": None if baseline is None else float(baseline),
            "shortcut": None if shortcut is None else float(shortcut)}
        from shared.study.verdicts import headroom_row

        return headroom_row(self.protocol, room, self.headroom_values[hypothesis_id])["passed"]

    def record_gate(self, name: str, value) -> bool:
        """Records a gate's measured value; returns whether it passes."""
        gate = self.protocol.gate(name)
        self.gate_values[name] = None if value is None else float(value)
        return gate.passes(value)

    def failed_gates(self, hypothesis_id=None) -> list:
        """Gates that failed (or were not measured), for one hypothesis or all."""
        return [g.name for g in self.protocol.gates
                if (hypothesis_id is None or g.covers(hypothesis_id))
                and not g.passes(self.gate_values.get(g.name))]

    def gates_passed(self, hypothesis_id=None) -> bool:
        return not self.failed_gates(hypothesis_id)

    def record(self, arm: str, unit, metrics: dict) -> None:
        """Records one arm's endpoint values at one unit (seed or fold).

        Raises:
            ValueError: an arm or unit the protocol does not declare, or a value that
                is not a finite number.
        """
        if arm not in self.outcomes:
            raise ValueError(f"arm {arm!r} is not declared by the protocol; expected one of "
                             f"{list(self.protocol.arms)}")
        if unit not in self.protocol.units:
            raise ValueError(f"unit {unit!r} is not declared by the protocol; expected one of "
                             f"{list(self.protocol.units)}")
        for endpoint, value in metrics.items():
            if value is None or not math.isfinite(float(value)):
                raise ValueError(f"arm {arm!r}, unit {unit!r}: endpoint {endpoint!r} is {value}; "
                                 f"expected a finite number")
            self.outcomes[arm].setdefault(endpoint, {})[unit] = float(value)

    def claims(self, *, seed: int, revision=None, trivial=None) -> dict:
        """The claims document of what was recorded so far (not written).

        `revision` defaults to the one read when the protocol was written."""
        revision = self.revision if revision is None else revision
        result = evaluate_study(self.protocol, self.outcomes, gate_values=self.gate_values,
                                trivial=trivial, seed=seed, validity=self.validity,
                                headroom_values=self.headroom_values)
        return build_claims(paper=self.protocol.paper, preset=self.protocol.preset, seed=seed,
                            revision=revision, protocol_sha256=self.protocol_sha256,
                            deviations=self.protocol.deviations, gates=result["gates"],
                            claims=result["claims"], design=self.protocol.design,
                            design_sha256=design_sha256(self.protocol),
                            provenance=provenance_block(revision, allow_dirty=self.allow_dirty),
                            data=self.data, arm_validity=self.validity_rows(),
                            headroom=result["headroom"])

    def finish(self, *, seed: int, revision=None, trivial=None) -> dict:
        """Evaluates every hypothesis and writes `claims.json`; returns the document.

        The outcomes are then logged as TensorBoard HParams, one session per arm and
        unit (`shared.training.tensorboard.write_study_hparams`)."""
        from shared.training.tensorboard import write_study_hparams

        document = self.claims(seed=seed, revision=revision, trivial=trivial)
        write_claims(self.out_dir, document)
        write_study_hparams(self.out_dir, self.outcomes)
        return document
