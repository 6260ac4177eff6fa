"""README's "What reproduces" table is the claims of the runs kept in docs/results/
(copies of their claims.json), rendered by `medrepro claims --combine --markdown`:
the combined line per claim first, then each run's line, not prose."""

import re
from pathlib import Path

import pytest

from shared.cli.claims import run_label
from shared.study.claims import combined_table_markdown, read_claims

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- claims-table:start -->", "<!-- claims-table:end -->"

pytestmark = pytest.mark.no_keras


def _results():
    return sorted((ROOT / "docs" / "results").glob("*.json"))


def test_readme_table_is_rendered_from_the_kept_claims():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, re.S)
    assert match, f"README.md lacks the {START} ... {END} block"
    files = _results()
    assert files, "docs/results/ holds no claims file"
    expected = combined_table_markdown([read_claims(path) for path in files],
                                       [run_label(path) for path in files],
                                       sources=[str(path) for path in files])
    assert match.group(1) == expected, (
        "README.md's claims table is out of date; regenerate it with "
        "`medrepro claims --combine --markdown docs/results/*.json`")


def test_kept_claims_are_named_after_their_run():
    for path in _results():
        doc = read_claims(path)
        # <paper>_<preset>[_<part, e.g. exp1>]_seed<k>
        assert path.stem.startswith(f"{doc['paper']}_{doc['preset']}_"), path.name
        assert path.stem.endswith(f"_seed{doc['seed']}"), path.name


def test_kept_verdicts_follow_from_their_own_numbers():
    """Each kept verdict is what the study's decision rule gives for the claim's own
    p, effect, interval and margin: the files are run outputs, not edited by hand."""
    from shared.study.verdicts import decide_verdict

    for path in _results():
        doc = read_claims(path)
        failed = [g["name"] for g in doc["gates"] if not g["passed"]]
        for claim in doc["claims"]:
            verdict, _ = decide_verdict(
                claim["direction"], p_holm=claim["p_holm"], effect=claim["effect"],
                ci95=claim["ci95"], sesoi=claim["sesoi"], alpha=claim.get("alpha", 0.05),
                mde=claim["mde"], n=claim["n"], failed_gates=failed,
                untestable=claim.get("untestable_because", ()))
            assert verdict == claim["verdict"], (path.name, claim["id"])
