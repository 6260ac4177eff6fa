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
        ValueError: not UTF-8, not JSON, nested too deeply, holding NaN / Infinity, or
            not a valid claims document (one line naming the file).
    """
    path = Path(path)
    if path.is_dir():
        path = path / CLAIMS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no claims file (run the paper's 'run' command first)")

    def no_constant(name):
        raise ValueError(f"{path}: {name} is not allowed (expected finite numbers, or null "
                         f"for a value that could not be computed)")

    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text at byte {err.start}; expected a claims.json "
                         f"written by a run") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read; expected a claims.json "
                         f"written by a run") from None
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


CLAIM_COLUMNS = ("claim", "endpoint", "arms", "n", "effect", "CI", "p (Holm)", "MDE",
                 "SESOI", "trivial", "paper", "verdict")


def _ci_cell(claim) -> str:
    """The interval, with its level when it is not 95 % (a one-sided claim's 1 - 2 alpha)."""
    level = claim.get("ci_level", 0.95)
    cell = _ci(claim["ci95"])
    if claim["ci95"] is not None and abs(level - 0.95) > 1e-9:
        cell += f" ({level:.0%}, one-sided)" if claim.get("sides") == 1 else f" ({level:.0%})"
    return cell


def claim_cells(claim) -> list:
    arms = " vs ".join(claim["arms"])
    return [claim["id"], claim["endpoint"], arms, str(claim["n"]), _num(claim["effect"]),
            _ci_cell(claim), _num(claim["p_holm"]), _num(claim["mde"]), _num(claim["sesoi"]),
            _trivial(claim["trivial"]), _num(claim["paper_value"]), f"**{claim['verdict']}**"]


def claims_markdown(document) -> str:
    """The claims table (gates, headroom, arm validity, provenance) a report opens with."""
    lines = ["## Claims", "",
             f"Protocol `{document['protocol_sha256'][:12]}` (declared in `protocol.json` "
             f"before training), preset `{document['preset']}`, seed {document['seed']}, "
             f"revision {revision_cell(document)}, data: {data_cell(document)}.", "",
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
    if document.get("headroom"):
        lines += ["", "| headroom of | ceiling | baseline | shortcut | room | required | passed |",
                  "|---|---|---|---|---|---|---|"]
        for row in document["headroom"]:
            lines.append(f"| {row['hypothesis']} | {_num(row['ceiling'])} | "
                         f"{_num(row['baseline'])} | {_num(row.get('shortcut'))} | "
                         f"{_num(row['room'])} | {_num(row['required'])} | "
                         f"{'yes' if row['passed'] else '**no**'} |")
    checks = {}
    for row in document.get("arm_validity") or []:
        entry = checks.setdefault((row["check"], row["arm"]), [0, 0])
        entry[0] += 1
        entry[1] += 0 if row["passed"] else 1
    if checks:
        lines += ["", "| arm check | arm | units | failed |", "|---|---|---|---|"]
        for (check, arm), (units, failed) in checks.items():
            lines.append(f"| {check} | {arm} | {units} | {failed if not failed else f'**{failed}**'} |")
    if document["deviations"]:
        lines += ["", "Deviations from the paper:", ""]
        lines += [f"- {d}" for d in document["deviations"]]
    return "\n".join(lines) + "\n"


def verdict_summary(document) -> str:
    """One line: the verdict of each claim, e.g. 'H1 reproduced, H2 untestable (no
    headroom)': an untestable claim says why, in a few words."""
    return ", ".join(f"{c['id']} {c['verdict']}" + _why_untestable(c) for c in document["claims"])


def _why_untestable(claim) -> str:
    if claim["verdict"] != "untestable":
        return ""
    reasons = claim.get("untestable_because") or []
    if not reasons:
        return " (gate failed)"
    first = reasons[0]
    if first.startswith("no headroom"):
        return " (no headroom)"
    if first.startswith("arm "):
        return f" ({first.split(' on ')[0]})"
    return f" ({first.split(':')[0]})"


def revision_cell(document) -> str:
    """The run's revision as kept (the full one in newer files), `+dirty` included, and
    `--allow-dirty` when the user allowed it."""
    revision = document.get("revision") or ""
    if not revision:
        return "-"
    allowed = (document.get("provenance") or {}).get("allow_dirty")
    return f"`{revision}`" + (" (--allow-dirty)" if allowed else "")


def data_cell(document) -> str:
    """Where the run's data came from, or 'not recorded' (files from before the field)."""
    data = document.get("data")
    if not data:
        return "not recorded"
    if data["source"] == "synthetic":
        return f"synthetic: `{data['generator']}` `{data['settings_sha256'][:12]}`"
    return f"user data: {data['files']} files, manifest `{data['manifest_sha256'][:12]}`"


RUN_COLUMNS = ("paper", "preset", "seed", "revision", "data")


def _run_cells(doc) -> list:
    return [doc["paper"], doc["preset"], str(doc["seed"]), revision_cell(doc), data_cell(doc)]


def claims_table_markdown(documents, labels=None) -> str:
    """A Markdown table of the claims of several runs: which run (its label when given,
    then paper, preset, seed, revision, data), then each claim's cells as in a report."""
    columns = (("run",) if labels is not None else ()) + RUN_COLUMNS + CLAIM_COLUMNS
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for k, doc in enumerate(documents):
        run = ([labels[k]] if labels is not None else []) + _run_cells(doc)
        for claim in doc["claims"]:
            lines.append("| " + " | ".join(run + claim_cells(claim)) + " |")
    return "\n".join(lines) + "\n"


def combined_cells(claim) -> list:
    verdict = claim["verdict"]
    return [claim["id"], claim["endpoint"], " vs ".join(claim["arms"]), str(claim["n"]),
            _num(claim["effect"]), _ci(claim["ci95"]), _num(claim["p_holm"]), _num(claim["mde"]),
            _num(claim["sesoi"]), _trivial(claim["trivial"]), _num(claim["paper_value"]),
            f"**{verdict}**" if verdict else "not combined"]


def combined_table_markdown(documents, labels, sources=None) -> str:
    """The README's table: per design and claim, the combined line over its runs first
    ("k of m runs agree"), then each run's own line. Runs grouped as one design that
    declare different designs are shown run by run under a combined line that says why
    they are not combined (the combination itself stays refused)."""
    from shared.study.combine import combine_documents

    groups = combine_documents(documents, list(sources if sources is not None else labels), strict=False)
    columns = ("run",) + RUN_COLUMNS + CLAIM_COLUMNS
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for group in groups:
        members = group["members"]
        seeds = ", ".join(str(documents[k]["seed"]) for k in members)
        for k_claim, claim in enumerate(group["claims"]):
            agree = (f"{claim['agree']} of {claim['runs']} runs agree" if claim["verdict"]
                     else f"{claim['runs']} runs" + (f"; {claim['why_not']}" if claim.get("why_not") else ""))
            lines.append("| " + " | ".join(
                [f"**combined** ({agree})", group["paper"], group["preset"], seeds, "-", "-"]
                + combined_cells(claim)) + " |")
            for k in members:
                run_claim = documents[k]["claims"][k_claim]
                lines.append("| " + " | ".join([labels[k]] + _run_cells(documents[k])
                                               + claim_cells(run_claim)) + " |")
    return "\n".join(lines) + "\n"


def claims_table_text(documents) -> str:
    """A plain-text table of the claims of several runs (one row per run and claim)."""
    header = ["paper", "preset", "seed", "claim", "endpoint", "effect", "CI", "p (Holm)",
              "MDE", "verdict"]
    rows = [header]
    for doc in documents:
        for c in doc["claims"]:
            rows.append([doc["paper"], doc["preset"], str(doc["seed"]), c["id"], c["endpoint"],
                         _num(c["effect"]), _ci(c["ci95"]), _num(c["p_holm"]), _num(c["mde"]),
                         c["verdict"]])
    revisions = sorted({f"{d['paper']} seed {d['seed']}: {d.get('revision') or '-'}"
                        for d in documents})
    return _text_table(rows) + "revisions: " + "; ".join(revisions) + "\n"


def combined_table_text(documents, sources) -> str:
    """Plain text: one combined line per design and claim, then each run's verdict."""
    from shared.study.combine import combine_documents

    header = ["paper", "preset", "design", "claim", "runs", "n", "effect", "CI", "p (Holm)",
              "MDE", "verdict", "agree", "per run"]
    rows = [header]
    for group in combine_documents(documents, sources):
        for c in group["claims"]:
            rows.append([group["paper"], group["preset"], group["design"] or "-", c["id"],
                         str(c["runs"]), str(c["n"]), _num(c["effect"]), _ci(c["ci95"]),
                         _num(c["p_holm"]), _num(c["mde"]), c["verdict"] or "not combined",
                         f"{c['agree']} of {c['runs']}", ", ".join(c["run_verdicts"])])
    return _text_table(rows)


def _text_table(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows) + "\n"
