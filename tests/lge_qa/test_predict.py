"""The tiny run's TensorBoard scalars and bundles, and `medrepro lge-qa predict` on NRRD volumes."""

import json

import cv2
import nrrd
import numpy as np
import pytest

from lge_qa import io
from lge_qa.config import STRATEGIES, get_config
from shared.testing.bad_input import assert_one_line_error, run_cli, tiny_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run of the three strategies through the command line."""
    return tiny_run("lge-qa", tmp_path_factory.mktemp("lge_qa"))


@pytest.fixture(scope="module")
def volumes(run, tmp_path_factory):
    """Two of the run's scored volumes padded to a non-square in-plane size, written by
    `io.write_case` (NRRD, gzip) as a user's cases."""
    folder = tmp_path_factory.mktemp("cases")
    paths = []
    cases = sorted((run / "data" / "quality").iterdir())[:2]
    for k, case in enumerate(cases):
        image, _ = nrrd.read(str(case / io.IMAGE_FILE))
        x, y, z = image.shape
        padded = np.zeros((x + 9, y + 4 + 5 * k, z), np.uint8)
        padded[3:3 + x, 2:2 + y] = image
        paths.append(io.write_case(folder, f"case{k}", padded) / io.IMAGE_FILE)
    return paths


def test_each_network_logs_per_epoch_scalars(run):
    from shared.testing.tensorboard_events import scalars

    cfg = get_config("tiny")
    board = run / "tensorboard"
    assert len(scalars(board / "la_detector" / "train")["epoch_loss"]) == cfg.unet_epochs
    results = json.loads((run / "metrics.json").read_text())["results"]
    for strategy in STRATEGIES:
        epochs = results[strategy][0]["epochs"]
        train = scalars(board / f"{strategy}_rep0" / "train")
        assert len(train["epoch_loss"]) == epochs and all(np.isfinite(v) for _, v in train["epoch_loss"])
        # The validation metrics early stopping reads are logged beside them.
        assert len(scalars(board / f"{strategy}_rep0" / "validation")["epoch_qa_auc"]) == epochs
    pretrain = results["contrastive"][0]["pretrain_loss"]
    assert len(scalars(board / "contrastive_pretrain_rep0" / "train")["epoch_loss"]) == len(pretrain)


def _by_hand(run, strategy, path):
    """The scores of `path` from pynrrd, NumPy and OpenCV directly, the loaded detector
    and QA network: (four mean probabilities, fibrosis-quality class, kept slices)."""
    from shared.io.bundle import load_bundle_model

    cfg = get_config("tiny")
    image, _ = nrrd.read(str(path))
    image = image.astype(np.float32)
    image = np.clip(image / np.percentile(image, 99.5), 0, 1)
    size = cfg.image_size
    x = np.stack([cv2.resize(image[:, :, z], (size, size), interpolation=cv2.INTER_LINEAR)
                  for z in range(image.shape[2])])[..., None].astype(np.float32)
    prob = np.asarray(load_bundle_model(run / "bundles" / "la_detector")(x, training=False))
    peak = prob.reshape(len(x), -1).max(axis=1)
    keep = np.flatnonzero(peak > cfg.detection_threshold)
    if keep.size == 0:
        keep = np.argsort(-peak)[:3]
    out = load_bundle_model(run / "bundles" / strategy)(x[keep], training=False)
    probs = np.stack([np.asarray(out[k]).reshape(-1) for k in ("nulling", "sharpness", "enhancement", "qa")], 1)
    diagnostic = int(np.sum(probs[:, 3] >= 0.5) > len(keep) / 2)  # ties: the smaller label
    return probs.mean(axis=0), ("non-diagnostic", "diagnostic")[diagnostic], np.sort(keep)


def test_predict_scores_the_detected_slices(run, volumes):
    from lge_qa.predict import predict_files

    assert (run / "bundles" / "la_detector" / "metadata.json").is_file()
    for strategy in STRATEGIES:
        meta = json.loads((run / "bundles" / strategy / "metadata.json").read_text())
        assert meta["paper"] == "lge_qa" and meta["data_type"] == "nrrd"
        assert meta["preprocessing"]["image_size"] == get_config("tiny").image_size
        assert meta["extra"]["detector"] == "la_detector"
        code, printed, err = run_cli(["lge-qa", "predict", "--model", run, "--arm", strategy, *volumes, "--json"])
        assert code == 0, err
        document = json.loads(printed)
        assert document["classes"] == list(io.SCORE_COLUMNS)
        _, _, kept = predict_files(run, volumes, strategy=strategy)
        for path, row, keep in zip(volumes, document["predictions"], kept):
            scores = np.array([row["scores"][c] for c in io.SCORE_COLUMNS])
            assert scores.shape == (4,) and np.all(np.isfinite(scores))
            assert np.all((scores >= 0) & (scores <= 1))  # four independent probabilities
            expected, label, keep_by_hand = _by_hand(run, strategy, path)
            np.testing.assert_array_equal(keep, keep_by_hand)
            np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)
            assert row["class"] == label
    code, printed, _ = run_cli(["lge-qa", "predict", "--model", run / "bundles" / "baseline", volumes[0]])
    lines = printed.splitlines()
    assert code == 0 and lines[0] == "file\tclass\t" + "\t".join(io.SCORE_COLUMNS) and len(lines) == 2


def test_bad_bundles_and_files_give_one_line(run, volumes, tmp_path):
    bundles = run / "bundles"
    assert_one_line_error(["lge-qa", "predict", "--model", run, volumes[0]], "bundles", "--arm")
    assert_one_line_error(["lge-qa", "predict", "--model", bundles / "la_detector", volumes[0]],
                          "extra.role", "detector")
    # A QA bundle alone, without the run's detector beside it.
    copy = tmp_path / "alone" / "baseline"
    copy.mkdir(parents=True)
    for name in ("config.json", "model.weights.h5", "metadata.json"):
        (copy / name).write_bytes((bundles / "baseline" / name).read_bytes())
    assert_one_line_error(["lge-qa", "predict", "--model", copy, volumes[0]],
                          str(tmp_path / "alone" / "la_detector" / "metadata.json"), "not found")
    meta = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**meta, "paper": "hrpqct"}))
    assert_one_line_error(["lge-qa", "predict", "--model", copy, volumes[0]],
                          str(copy / "metadata.json"), "'paper'", "lge_qa")
    (copy / "metadata.json").unlink()
    assert_one_line_error(["lge-qa", "predict", "--model", copy, volumes[0]], str(copy / "metadata.json"),
                          "not found")
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\nnot a header")
    assert_one_line_error(["lge-qa", "predict", "--model", bundles / "baseline", broken], "broken.nrrd")
    assert_one_line_error(["lge-qa", "predict", "--model", bundles / "baseline", tmp_path / "missing.nrrd"],
                          "missing.nrrd")
