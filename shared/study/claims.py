"""`claims.json`: one output contract for every paper's study.

Every `medrepro <paper> run` writes `claims.json` beside `report.md`::

    {paper, preset, seed, revision, protocol_sha256, deviations,
     gates: [{name, value, threshold, passed}],
     claims: [{id, statement, endpoint, arms, direction, paired, n, effect, ci95, test,
               p, p_holm, mde, sesoi, trivial, paper_value, verdict}]}

validated against `claims.schema.json`, shipped beside this module. The report opens
with `claims_markdown`; `medrepro claims RUN_DIR...` prints several runs at once.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.io.atomic import write_json
from shared.tracking.runs import finite_or_none, to_jsonable

CLAIMS_FILE = "claims.json"
SCHEMA_PATH = Path(__file__).with_name("claims.schema.json")


def claims_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate_claims(document, *, source="claims") -> dict:
    """Checks a claims document against the schema.

    Raises:
        ValueError: one line naming the source, the field and what was expected.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(claims_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"{source}: field '{field}': {error.message}")
    return document


def build_claims(*, paper, preset, seed, revision, protocol_sha256, deviations, gates,
                 claims, design=None, design_sha256=None, provenance=None, data=None,
                 arm_validity=None, headroom=None) -> dict:
    """The claims document (validated); non-finite numbers become null.

    The keyword fields after `claims` were added later; a document without them (a
    kept file from before) still reads, with them shown as absent."""
    document = {
        "paper": paper, "preset": preset, "seed": int(seed), "revision": revision or "",
        "protocol_sha256": protocol_sha256, "deviations": list(deviations),
        "gates": list(gates), "claims": list(claims),
    }
    later = {"design": design, "design_sha256": design_sha256, "provenance": provenance,
             "data": data, "arm_validity": arm_validity, "headroom": headroom}
    document.update({k: v for k, v in later.items() if v is not None})
    document = finite_or_none(to_jsonable(document))
    return validate_claims(document, source=f"claims of {paper}")


def write_claims(out_dir, document) -> Path:
    """Writes `<out_dir>/claims.json` atomically after validating it."""
    validate_claims(document)
    return write_json(Path(out_dir) / CLAIMS_FILE, document)


def read_claims(path) -> dict:
    """Reads and validates a `claims.json` (or the one inside a run folder).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON or not a valid claims document (one line).
    """
    path = Path(path)
    if path.is_dir():
        path = path / CLAIMS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no claims file (run the paper's 'run' command first)")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    return validate_claims(document, source=str(path))


def _num(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits + 1}g}"
    return f"{x:.2e}"


def _ci(ci):
    return "-" if ci is None else f"[{_num(ci[0])}, {_num(ci[1])}]"


def _trivial(t):
    return "-" if not t else f"{_num(t.get('value'))} ({t.get('name')})"


CLAIM_COLUMNS = ("claim", "endpoint", "arms", "n", "effect", "95 % CI", "p (Holm)", "MDE",
                 "SESOI", "trivial", "paper", "verdict")


def claim_cells(claim) -> list:
    arms = " vs ".join(claim["arms"])
    return [claim["id"], claim["endpoint"], arms, str(claim["n"]), _num(claim["effect"]),
            _ci(claim["ci95"]), _num(claim["p_holm"]), _num(claim["mde"]), _num(claim["sesoi"]),
            _trivial(claim["trivial"]), _num(claim["paper_value"]), f"**{claim['verdict']}**"]


def claims_markdown(document) -> str:
    """The claims table (and failed gates) a report opens with, in Markdown."""
    lines = ["## Claims", "",
             f"Protocol `{document['protocol_sha256'][:12]}` (declared in `protocol.json` "
             f"before training), preset `{document['preset']}`, seed {document['seed']}.", "",
             "| " + " | ".join(CLAIM_COLUMNS) + " |",
             "|" + "---|" * len(CLAIM_COLUMNS)]
    for claim in document["claims"]:
        lines.append("| " + " | ".join(claim_cells(claim)) + " |")
    lines.append("")
    for claim in document["claims"]:
        note = claim.get("note")
        lines.append(f"- **{claim['id']}** ({claim['verdict']}): {claim['statement']}"
                     + (f" *{note}.*" if note else ""))
    if document["gates"]:
        lines += ["", "| gate | value | threshold | passed |", "|---|---|---|---|"]
        for gate in document["gates"]:
            lines.append(f"| {gate['name']} | {_num(gate['value'])} | "
                         f"{gate.get('comparison', '')} {_num(gate['threshold'])} | "
                         f"{'yes' if gate['passed'] else '**no**'} |")
    if document["deviations"]:
        lines += ["", "Deviations from the paper:", ""]
        lines += [f"- {d}" for d in document["deviations"]]
    return "\n".join(lines) + "\n"


def verdict_summary(document) -> str:
    """One line: the verdict of each claim, e.g. 'H1 reproduced, H2 inconclusive'."""
    return ", ".join(f"{c['id']} {c['verdict']}" for c in document["claims"])


def claims_table_markdown(documents, labels=None) -> str:
    """A Markdown table of the claims of several runs: which run (its label when given,
    then paper, preset, seed, revision), then each claim's cells as in a report."""
    columns = (("run",) if labels is not None else ()) + ("paper", "preset", "seed",
                                                          "revision") + CLAIM_COLUMNS
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for k, doc in enumerate(documents):
        run = ([labels[k]] if labels is not None else []) + [
            doc["paper"], doc["preset"], str(doc["seed"]),
            f"`{doc['revision'][:7]}`" if doc["revision"] else "-"]
        for claim in doc["claims"]:
            lines.append("| " + " | ".join(run + claim_cells(claim)) + " |")
    return "\n".join(lines) + "\n"


def claims_table_text(documents) -> str:
    """A plain-text table of the claims of several runs (one row per run and claim)."""
    header = ["paper", "preset", "seed", "claim", "endpoint", "effect", "95 % CI", "p (Holm)",
              "MDE", "verdict"]
    rows = [header]
    for doc in documents:
        for c in doc["claims"]:
            rows.append([doc["paper"], doc["preset"], str(doc["seed"]), c["id"], c["endpoint"],
                         _num(c["effect"]), _ci(c["ci95"]), _num(c["p_holm"]), _num(c["mde"]),
                         c["verdict"]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows) + "\n"
