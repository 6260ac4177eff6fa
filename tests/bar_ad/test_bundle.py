"""A bar_ad framework bundle and `predict` on NIfTI scans written in the ADNI layout."""

import json

import numpy as np
import pytest

from bar_ad.atlas import load_atlas
from bar_ad.bundle import centering_stats, predict_files, write_framework_bundle
from bar_ad.config import get_config, get_framework
from bar_ad.data import load_volume, write_adni_cohort
from bar_ad.phantom import CohortGenerator, CohortSpec
from bar_ad.training import ModelBank
from shared.testing.bad_input import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """NIfTI scans as the ADNI download holds them (the synthetic cohort's writer)."""
    root = tmp_path_factory.mktemp("adni")
    gen_atlas = load_atlas((20, 24, 20))
    write_adni_cohort(root, CohortGenerator(gen_atlas, CohortSpec(n_ad=1, n_cn=2, scans_per_subject=(1, 1)))
                      .subjects(0), gen_atlas)
    return sorted(root.rglob("*.nii"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, scans):
    config = get_config("tiny")
    model = ModelBank(config, seed=0).classifier(get_framework("scratch"), config.scratch_lr)
    atlas = load_atlas(config.grid, source=config.atlas_source)
    x = np.stack([load_volume(p, atlas) for p in scans])[..., None]
    center = centering_stats(x, np.arange(len(x)))
    run = tmp_path_factory.mktemp("run")
    folder = write_framework_bundle(run, "scratch", model, config, seed=0, unit=0, center=center)
    return run, folder, model, x, center


def test_predict_equals_the_model_on_the_runs_preprocessing(bundle, scans):
    run, folder, model, x, (mean, std) = bundle
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["paper"] == "bar_ad" and meta["data_type"] == "nifti"
    assert meta["preprocessing"]["center"] is True and meta["preprocessing"]["std"] == pytest.approx(std)
    assert (folder / "mean_volume.npy").is_file()
    # The run's own path: centred with the training statistics, then the model.
    expected = model.predict((x - mean) / std, verbose=0)[:, 0]
    classes, rows = predict_files(run, scans)
    assert classes == ["CN", "AD"]
    np.testing.assert_allclose([r[2][1] for r in rows], expected, rtol=1e-5, atol=1e-6)
    assert [r[1] for r in rows] == ["AD" if p >= 0.5 else "CN" for p in expected]
    code, printed, _ = run_cli(["bar-ad", "predict", "--model", folder, *scans, "--json"])
    document = json.loads(printed)
    assert code == 0 and len(document["predictions"]) == len(scans)
    assert document["predictions"][0]["scores"]["AD"] == pytest.approx(rows[0][2][1], rel=1e-5)
    code, printed, _ = run_cli(["bar-ad", "predict", "--model", run, "--arm", "scratch", scans[0]])
    assert code == 0 and printed.splitlines()[0] == "file\tclass\tCN\tAD"


def test_bundle_without_metadata_or_of_another_paper(bundle, scans, tmp_path):
    _, folder, model, _, _ = bundle
    meta = json.loads((folder / "metadata.json").read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "model.weights.h5", "mean_volume.npy"):
        (copy / name).write_bytes((folder / name).read_bytes())
    (copy / "metadata.json").write_text(json.dumps({**meta, "paper": "heatmap_loss"}))
    assert_one_line_error(["bar-ad", "predict", "--model", copy, scans[0]],
                          str(copy / "metadata.json"), "'paper'", "bar_ad")
    (copy / "metadata.json").unlink()
    assert_one_line_error(["bar-ad", "predict", "--model", copy, scans[0]],
                          str(copy / "metadata.json"), "not found")
    not_nifti = tmp_path / "scan.nii"
    not_nifti.write_bytes(b"not a nifti file")
    assert_one_line_error(["bar-ad", "predict", "--model", folder, not_nifti], "scan.nii")
