"""The tiny run's TensorBoard scalars and bundles, and `medrepro hrpqct predict` on AIM files."""

import json

import numpy as np
import pytest

from hrpqct import aim
from hrpqct.config import ARMS, get_config
from shared.testing.bad_input import assert_one_line_error, run_cli, tiny_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run through the command line (two units per arm, ensembles of one)."""
    return tiny_run("hrpqct", tmp_path_factory.mktemp("hrpqct"))


@pytest.fixture(scope="module")
def scans(run, tmp_path_factory):
    """Two of the run's AIMs padded with air to a non-square in-plane size, rewritten as AIM."""
    folder = tmp_path_factory.mktemp("aims")
    paths = []
    for k, source in enumerate(sorted((run / "data" / "aim").iterdir())[:2]):
        img = aim.read_aim(source)
        z, y, x = img.data.shape
        padded = np.zeros((z, y + 7 + 3 * k, x + 20), img.data.dtype)
        padded[:, 4:4 + y, 11:11 + x] = img.data
        paths.append(aim.write_aim(folder / f"scan{k}.AIM", padded, img.spacing, log=img.log))
    return paths


def test_each_network_logs_per_epoch_scalars(run):
    from shared.testing.tensorboard_events import scalars

    config = get_config("tiny")
    for arm in ARMS:
        for unit in range(config.seeds):
            folder = run / "tensorboard" / f"{arm}_unit{unit}_member0"
            train = scalars(folder / "train")
            assert len(train["epoch_loss"]) == config.epochs
            assert all(np.isfinite(v) for _, v in train["epoch_loss"])
            # The epoch selection's validation kappa and loss are logged beside it.
            val = scalars(folder / "validation")
            assert len(val["epoch_kappa"]) == len(val["epoch_loss"]) == config.epochs


def _by_hand(bundle, path):
    """The grader's input of `path` built from the AIM reader and `model_input` directly, and
    the loaded model's slice probabilities on it."""
    from hrpqct.data import equally_spaced
    from hrpqct.scan_input import model_input
    from shared.io.bundle import load_bundle_model

    prep = json.loads((bundle / "metadata.json").read_text())["preprocessing"]
    img = aim.read_aim(path)
    picked = img.data[equally_spaced(img.data.shape[0], prep["slices_per_scan"])].astype(np.float32)
    picked /= float(img.log["Mu_Scaling"])
    pixel = (img.spacing[1], img.spacing[0])
    x, _ = model_input(picked, pixel, field_of_view_mm=prep["field_of_view_mm"], image_size=prep["image_size"],
                       prefilter_mm=prep["prefilter_mm"])
    x = (x - prep["mean"]) / prep["std"]
    return np.asarray(load_bundle_model(bundle)(x[..., None].astype(np.float32), training=False))


def test_predict_grades_every_slice_and_votes(run, scans):
    config = get_config("tiny")
    for arm in ARMS:
        bundle = run / "bundles" / arm
        meta = json.loads((bundle / "metadata.json").read_text())
        assert meta["paper"] == "hrpqct" and meta["data_type"] == "aim"
        assert meta["preprocessing"]["image_size"] == config.model_size
        assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["4"] == "grade 5"
        code, printed, err = run_cli(["hrpqct", "predict", "--model", run, "--arm", arm, *scans, "--json"])
        assert code == 0, err
        document = json.loads(printed)
        assert document["classes"] == [f"grade {g}" for g in range(1, 6)]
        assert [p["file"] for p in document["predictions"]] == [str(p) for p in scans]
        for path, row in zip(scans, document["predictions"]):
            probs = _by_hand(bundle, path)
            assert probs.shape == (config.slices_per_scan, 5)
            scores = np.array([row["scores"][c] for c in document["classes"]])
            assert np.all(np.isfinite(scores)) and scores.sum() == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(scores, probs.mean(axis=0), rtol=1e-4, atol=1e-6)
            # The vote: each slice's most probable grade, the scan the rounded (half up) mean.
            slice_grades = probs.argmax(axis=1) + 1
            assert row["class"] == f"grade {int(np.floor(slice_grades.mean() + 0.5))}"
    code, printed, _ = run_cli(["hrpqct", "predict", "--model", run / "bundles" / "proposed", scans[0]])
    lines = printed.splitlines()
    assert code == 0 and lines[0] == "file\tclass\tgrade 1\tgrade 2\tgrade 3\tgrade 4\tgrade 5"
    assert len(lines) == 2 and lines[1].startswith(f"{scans[0]}\tgrade ")


def test_bad_bundles_and_files_give_one_line(run, scans, tmp_path):
    bundle = run / "bundles" / "baseline"
    # A run folder holds two bundles: which one is needed.
    assert_one_line_error(["hrpqct", "predict", "--model", run, scans[0]], "bundles", "--arm")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "model.weights.h5"):
        (copy / name).write_bytes((bundle / name).read_bytes())
    meta = json.loads((bundle / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**meta, "paper": "lge_qa"}))
    assert_one_line_error(["hrpqct", "predict", "--model", copy, scans[0]],
                          str(copy / "metadata.json"), "'paper'", "hrpqct")
    (copy / "metadata.json").unlink()
    assert_one_line_error(["hrpqct", "predict", "--model", copy, scans[0]], str(copy / "metadata.json"),
                          "not found")
    broken = tmp_path / "broken.AIM"
    broken.write_bytes(b"not an AIM file")
    assert_one_line_error(["hrpqct", "predict", "--model", bundle, broken], "broken.AIM")
    assert_one_line_error(["hrpqct", "predict", "--model", bundle, tmp_path / "missing.AIM"], "missing.AIM")
