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
"""

from __future__ import annotations

import math
from pathlib import Path

from shared.study.claims import build_claims, write_claims
from shared.study.protocol import Protocol, write_protocol
from shared.study.verdicts import evaluate_hypotheses
from shared.tracking.runs import git_revision


class Study:
    """Collects what a run measures under a protocol written before training.

    Args:
        protocol: Protocol.
        out_dir: str or Path. The run folder; `protocol.json` is written at once.

    Attributes:
        revision: the source revision (`git_revision()`) when the protocol was written.
    """

    def __init__(self, protocol: Protocol, out_dir):
        self.protocol = protocol
        self.out_dir = Path(out_dir)
        self.protocol_sha256 = write_protocol(protocol, self.out_dir)
        self.revision = git_revision()
        self.gate_values: dict = {}
        self.outcomes: dict = {arm: {} for arm in protocol.arms}

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
        claims, gates = evaluate_hypotheses(self.protocol, self.outcomes,
                                            gate_values=self.gate_values, trivial=trivial,
                                            seed=seed)
        return build_claims(paper=self.protocol.paper, preset=self.protocol.preset, seed=seed,
                            revision=revision, protocol_sha256=self.protocol_sha256,
                            deviations=self.protocol.deviations, gates=gates, claims=claims)

    def finish(self, *, seed: int, revision=None, trivial=None) -> dict:
        """Evaluates every hypothesis and writes `claims.json`; returns the document."""
        document = self.claims(seed=seed, revision=revision, trivial=trivial)
        write_claims(self.out_dir, document)
        return document
