"""A heatmap_loss group bundle and `predict` on PNG / JPEG files."""

import json

import cv2
import keras
import numpy as np
import pytest

from heatmap_loss.bundle import group_metadata, predict_files, write_group_bundle
from heatmap_loss.config import get_config
from heatmap_loss.models import build_classifier
from heatmap_loss.phantom import CLASSES
from shared.testing.bad_input import assert_one_line_error, run_cli

RECORD = {"trial_index": 1, "learning_rate": 1e-3, "val_accuracy": 0.75, "group": "heatmap"}


@pytest.fixture
def bundle(tmp_path):
    keras.utils.set_random_seed(0)
    config = get_config("tiny")
    model = build_classifier(tuple(config.image_size) + (1,), filters=config.filters,
                             dense_units=config.dense_units)
    meta = group_metadata(config, group="heatmap", classes=CLASSES, run_dir=tmp_path / "run", seed=5,
                          source={"kind": "synthetic", "experiment": 1}, record=RECORD)
    return model, write_group_bundle(tmp_path / "run", model, meta), config


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(2)
    grey8 = rng.integers(0, 256, (105, 135), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (90, 120), dtype=np.uint16)
    colour = rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)
    paths = [tmp_path / "film.png", tmp_path / "film16.png", tmp_path / "film.jpg"]
    cv2.imwrite(str(paths[0]), grey8)
    cv2.imwrite(str(paths[1]), grey16)
    cv2.imwrite(str(paths[2]), colour)
    return paths


def _by_hand(path, size):
    """0-255 grey intensities (16 bit scaled by 255/65535), INTER_AREA to the model grid."""
    raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if raw.ndim == 3:
        raw = cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY)
    grey = raw.astype(np.float32) * (255.0 / 65535.0 if raw.dtype == np.uint16 else 1.0)
    return cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_AREA)[..., None]


def test_predict_equals_the_classifier_on_hand_preprocessed_images(bundle, images, tmp_path):
    model, folder, config = bundle
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["paper"] == "heatmap_loss" and meta["name"] == "heatmap"
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == list(config.image_size)
    assert meta["preprocessing"]["normalisation"] == {"kind": "unit", "inside_model": True}
    assert "not for diagnostic use" in meta["intended_use"]
    x = np.stack([_by_hand(p, config.image_size) for p in images])
    logits = np.asarray(model(x, training=False))
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    classes, rows = predict_files(tmp_path / "run", images, group="heatmap")
    assert classes == list(CLASSES)
    np.testing.assert_allclose([r[2] for r in rows], expected, rtol=1e-4, atol=1e-6)
    assert [r[1] for r in rows] == [CLASSES[i] for i in expected.argmax(1)]
    code, printed, _ = run_cli(["heatmap-loss", "predict", "--model", folder, *images])
    lines = printed.splitlines()
    assert code == 0 and lines[0] == "file\tclass\t" + "\t".join(CLASSES) and len(lines) == 4
    assert [line.split("\t")[1] for line in lines[1:]] == [r[1] for r in rows]
    code, printed, _ = run_cli(["heatmap-loss", "predict", "--model", tmp_path / "run", "--arm", "heatmap",
                                images[0], "--json"])
    document = json.loads(printed)
    assert code == 0 and document["classes"] == list(CLASSES)
    assert document["predictions"][0]["scores"]["NOR"] == pytest.approx(rows[0][2][0], rel=1e-5)


def test_bundle_without_metadata_or_of_another_paper_is_one_line(bundle, images, tmp_path):
    _, folder, _ = bundle
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "paper": "bar_ad"}))
    assert_one_line_error(["heatmap-loss", "predict", "--model", folder, images[0]],
                          str(folder / "metadata.json"), "'paper'", "heatmap_loss")
    (folder / "metadata.json").write_text(json.dumps({**meta, "intended_use": "clinical triage"}))
    assert_one_line_error(["heatmap-loss", "predict", "--model", folder, images[0]],
                          "metadata.json", "'intended_use'")
    (folder / "metadata.json").unlink()
    assert_one_line_error(["heatmap-loss", "predict", "--model", folder, images[0]],
                          str(folder / "metadata.json"), "not found")
    assert_one_line_error(["heatmap-loss", "predict", "--model", tmp_path / "run", "--arm", "cce",
                           images[0]], "bundles", "no bundle 'cce'")
