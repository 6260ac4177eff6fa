"""Studies that can answer a paper's question: declared, gated, paired, with verdicts.

* `protocol`: arms, pairing unit, units, test set, hypotheses and gates, written to
  `protocol.json` with its SHA-256 before anything trains;
* `verdicts`: reproduced / contradicted / inconclusive (with the minimum detectable
  effect) / untestable, Holm-corrected within a family;
* `claims`: the `claims.json` contract every paper writes, its schema and its tables;
* `study`: `Study`, which ties them together in a run;
* `trivial`: trivial predictors (the majority class) to stand beside the endpoints.

See docs/studies.md.
"""

from shared.study.claims import (
    CLAIMS_FILE,
    build_claims,
    claims_markdown,
    claims_table_text,
    read_claims,
    validate_claims,
    verdict_summary,
    write_claims,
)
from shared.study.protocol import (
    PROTOCOL_FILE,
    Gate,
    Hypothesis,
    Protocol,
    protocol_sha256,
    read_protocol,
    write_protocol,
)
from shared.study.study import Study
from shared.study.verdicts import VERDICTS, decide_verdict, evaluate_hypotheses

__all__ = [
    "CLAIMS_FILE",
    "Gate",
    "Hypothesis",
    "PROTOCOL_FILE",
    "Protocol",
    "Study",
    "VERDICTS",
    "build_claims",
    "claims_markdown",
    "claims_table_text",
    "decide_verdict",
    "evaluate_hypotheses",
    "protocol_sha256",
    "read_claims",
    "read_protocol",
    "validate_claims",
    "verdict_summary",
    "write_claims",
    "write_protocol",
]
