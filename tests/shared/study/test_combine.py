"""`medrepro claims --combine`: replications combined by the declared rule."""

import copy
import json
import math

import numpy as np
import pytest
from scipy import stats

from shared import cli
from shared.study import Hypothesis, Protocol, Study
from shared.study.claims import write_claims
from shared.study.combine import combine_documents

pytestmark = pytest.mark.no_keras


def _protocol(units, sesoi=0.05, test="paired_t", seed=1000):
    return Protocol(
        paper="toy", preset="powered", arms=("new", "old"), pairing_unit="seed", units=units,
        test_set={"seed": seed, "size": 50},
        hypotheses=(Hypothesis(id="H1", statement="new beats old", endpoint="acc",
                               arms=("new", "old"), direction="greater", sesoi=sesoi,
                               test=test),))


def _run(folder, seed, diffs, **kw):
    units = tuple(range(10 * seed, 10 * seed + len(diffs)))
    study = Study(_protocol(units, seed=1000 + seed, **kw), folder)
    for unit, d in zip(units, diffs):
        study.record("new", unit, {"acc": 0.7 + d})
        study.record("old", unit, {"acc": 0.7})
    return study.finish(seed=seed)


RUN_A, RUN_B = [0.1, 0.2, 0.3], [0.0, 0.2, 0.4]


def test_two_runs_combine_to_the_hand_computed_stratified_result(tmp_path):
    docs = [_run(tmp_path / "a", 0, RUN_A), _run(tmp_path / "b", 1, RUN_B)]
    [group] = combine_documents(docs, ["a", "b"])
    claim = group["claims"][0]
    # effect 0.2; pooled s^2 = (2 * 0.01 + 2 * 0.04) / 4 = 0.025 on 4 df; se = sqrt(0.025 / 6)
    se = math.sqrt(0.025 / 6)
    assert claim["effect"] == pytest.approx(0.2) and claim["n"] == 6
    assert claim["p"] == pytest.approx(2 * stats.t.sf(0.2 / se, 4))
    half = stats.t.ppf(0.975, 4) * se
    assert claim["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    assert claim["verdict"] == "reproduced"
    # each run alone (3 units, 2 df) is not significant: 0 of 2 agree
    assert [d["claims"][0]["verdict"] for d in docs] == ["inconclusive", "inconclusive"]
    assert claim["agree"] == 0 and claim["source"] == "unit values"


def test_kept_files_without_unit_values_are_recovered_from_their_t_interval(tmp_path):
    docs = [_run(tmp_path / "a", 0, RUN_A), _run(tmp_path / "b", 1, RUN_B)]
    full = combine_documents(docs, ["a", "b"])[0]["claims"][0]
    old = copy.deepcopy(docs)
    for doc in old:
        for key in ("design", "design_sha256", "provenance", "arm_validity", "headroom"):
            doc.pop(key, None)
        for claim in doc["claims"]:
            for key in ("unit_values", "sides", "ci_level", "untestable_because", "validity"):
                claim.pop(key)
    recovered = combine_documents(old, ["toy_powered_seed0.json", "toy_powered_seed1.json"])
    claim = recovered[0]["claims"][0]
    assert claim["p"] == pytest.approx(full["p"]) and claim["ci95"] == pytest.approx(full["ci95"])
    assert claim["source"] == "recovered from each run's t-interval"


def test_a_bootstrap_interval_without_unit_values_is_not_combined(tmp_path):
    rng = np.random.default_rng(0)
    docs = [_run(tmp_path / f"r{s}", s, list(rng.normal(0.05, 0.05, 12)), test="wilcoxon")
            for s in (0, 1)]
    for doc in docs:
        doc["claims"][0].pop("unit_values")
    claim = combine_documents(docs, ["r0", "r1"])[0]["claims"][0]
    assert claim["verdict"] is None and "bootstrap interval" in claim["note"]


def test_wilcoxon_claims_take_the_stratified_signed_rank_p(tmp_path):
    from shared.stats.stratified import stratified_signed_rank

    docs = [_run(tmp_path / "a", 0, [0.1, 0.2, 0.3, -0.05], test="wilcoxon"),
            _run(tmp_path / "b", 1, [0.02, 0.2, 0.4, 0.1], test="paired_t")]
    with pytest.raises(ValueError, match="b: field 'design_sha256'"):
        combine_documents(docs, ["a", "b"])
    docs[1] = _run(tmp_path / "c", 1, [0.02, 0.2, 0.4, 0.1], test="wilcoxon")
    docs[0] = _run(tmp_path / "d", 0, [0.1, 0.2, 0.3, -0.05], test="wilcoxon")
    claim = combine_documents(docs, ["d", "c"])[0]["claims"][0]
    expected = stratified_signed_rank([np.array([0.1, 0.2, 0.3, -0.05]),
                                       np.array([0.02, 0.2, 0.4, 0.1])])["p"]
    assert claim["test"] == "stratified_signed_rank" and claim["p"] == pytest.approx(expected)


def test_untestable_in_one_run_is_untestable_combined(tmp_path):
    docs = [_run(tmp_path / "a", 0, RUN_A), _run(tmp_path / "b", 1, RUN_B)]
    docs[1]["claims"][0].update(verdict="untestable", note="gate failed: signal")
    claim = combine_documents(docs, ["a", "b"])[0]["claims"][0]
    assert claim["verdict"] == "untestable" and "untestable in 1 of 2 runs" in claim["note"]


def _write(folder, doc):
    write_claims(folder, doc)
    return str(folder / "claims.json")


def test_cli_refuses_runs_of_different_designs_in_one_line(tmp_path, capsys):
    a = _run(tmp_path / "a", 0, RUN_A)
    b = _run(tmp_path / "b", 1, RUN_B, sesoi=0.03)
    code = cli.main(["claims", "--combine", _write(tmp_path / "a", a), _write(tmp_path / "b", b)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "b/claims.json: field 'design_sha256'" in err[0] and "one design" in err[0]
    b.pop("design_sha256")  # a kept file from before the hash: the declared field is named
    code = cli.main(["claims", "--combine", _write(tmp_path / "a", a), _write(tmp_path / "b", b)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "field 'claims/H1/sesoi': 0.03 differs" in err[0]


def test_cli_refuses_the_same_seed_twice(tmp_path, capsys):
    a = _run(tmp_path / "a", 0, RUN_A)
    code = cli.main(["claims", "--combine", _write(tmp_path / "a", a), _write(tmp_path / "c", a)])
    assert code == 2 and "field 'seed': 0 is also the seed of" in capsys.readouterr().err


def test_cli_prints_the_combined_line_then_each_run(tmp_path, capsys):
    a, b = _run(tmp_path / "a", 0, RUN_A), _run(tmp_path / "b", 1, RUN_B)
    code = cli.main(["claims", "--combine", "--markdown", _write(tmp_path / "a", a),
                     _write(tmp_path / "b", b)])
    rows = capsys.readouterr().out.splitlines()
    assert code == 0 and len(rows) == 2 + 3
    assert rows[2].startswith("| **combined** (0 of 2 runs agree) | toy | powered | 0, 1 |")
    assert "**reproduced**" in rows[2] and rows[3].startswith("| a | toy |")


def test_cli_refuses_a_malformed_data_manifest(tmp_path, capsys):
    from shared.study.provenance import user_data

    data = tmp_path / "data"
    data.mkdir()
    (data / "scan.txt").write_text("voxels")
    a = _run(tmp_path / "a", 0, RUN_A)
    a["data"] = user_data(data, tmp_path / "a")
    path = _write(tmp_path / "a", a)
    assert cli.main(["claims", path]) == 0
    manifest = tmp_path / "a" / "data_manifest.json"
    rows = json.loads(manifest.read_text())
    rows["files"][0]["sha256"] = "xyz"
    manifest.write_text(json.dumps(rows))
    capsys.readouterr()
    assert cli.main(["claims", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data_manifest.json: field 'files/0/sha256'" in err[0]
    rows["files"][0]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(rows))
    assert cli.main(["claims", path]) == 2
    assert "field 'files': the listed files hash to" in capsys.readouterr().err


def test_cli_refuses_a_malformed_protocol_hash(tmp_path):
    from shared.study import read_protocol

    _run(tmp_path / "a", 0, RUN_A)
    path = tmp_path / "a" / "protocol.json"
    data = json.loads(path.read_text())
    data["protocol"]["units"] = [99]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="protocol.json: field 'sha256' does not match"):
        read_protocol(path)


def test_the_readme_table_shows_runs_of_two_designs_without_combining_them(tmp_path):
    from shared.study.claims import combined_table_markdown

    docs = [_run(tmp_path / "a", 0, RUN_A, test="wilcoxon"), _run(tmp_path / "b", 1, RUN_B)]
    with pytest.raises(ValueError, match="design_sha256"):
        combine_documents(docs, ["a", "b"])  # the combination stays refused
    table = combined_table_markdown(docs, ["a", "b"])
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 3  # the combined line, then each run's own
    assert rows[0].startswith("| **combined** (2 runs; not one design) |")
    assert rows[0].rstrip(" |").endswith("not combined") and "| 6 |" in rows[0]  # 3 + 3 units
    assert rows[1].startswith("| a |") and rows[2].startswith("| b |")
