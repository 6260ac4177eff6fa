"""The shared bundle layout for covidnet_siamese, and run folders of the old layout."""

import dataclasses
import json
import types

import cv2
import keras
import numpy as np
import pytest

from covidnet_siamese.config import CLASS_NAMES, tiny
from covidnet_siamese.inference import (bundle_entry, predict_images, prepare_images, write_arm_bundle,
                                        write_bundle_json)
from covidnet_siamese.models import build_siamese_net, build_single_net
from covidnet_siamese.training import embed, template_similarities
from shared.testing.bad_input import run_cli

SIZE = 16


@pytest.fixture
def films(tmp_path):
    """Two chest films as a user would have them: an 8-bit PNG and a 16-bit PNG."""
    rng = np.random.default_rng(0)
    a = tmp_path / "a.png"
    b = tmp_path / "b.png"
    cv2.imwrite(str(a), rng.integers(0, 256, (40, 48), dtype=np.uint8))
    cv2.imwrite(str(b), rng.integers(0, 65536, (48, 40), dtype=np.uint16))
    return [a, b]


def _config():
    return dataclasses.replace(tiny(), image_size=SIZE)


DATA = types.SimpleNamespace(mean=0.45, std=0.2)


def test_siamese_bundle_predicts_as_the_model_and_templates_do(tmp_path, films):
    keras.utils.set_random_seed(3)
    model = build_siamese_net((SIZE, SIZE, 1), nf=2, depths=(1,), embedding_dim=4)
    templates = np.random.default_rng(1).normal(size=(3, 4))
    folder = write_arm_bundle(tmp_path / "run", "siamese", model, DATA, _config(), templates, seed=7)
    assert folder == tmp_path / "run" / "bundles" / "siamese"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["paper"] == "covidnet_siamese" and "not for diagnostic use" in meta["intended_use"]
    assert meta["preprocessing"]["mean"] == 0.45 and meta["preprocessing"]["std"] == 0.2
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "normal", "1": "pneumonia",
                                                                               "2": "COVID-19"}
    assert meta["training"]["seed"] == 7
    # Independent reference: the paper's preprocessing by hand, then the model and templates.
    expected = []
    for path in films:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32)
        grey = raw / (255.0 if raw.max() <= 255 and path.name == "a.png" else 65535.0)
        small = cv2.resize(grey, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        expected.append((small - 0.45) / 0.2)
    x = np.stack(expected)[..., None].astype(np.float32)
    np.testing.assert_allclose(prepare_images(films, {"image_size": SIZE, "crop_fraction": 0.0,
                                                      "mean": 0.45, "std": 0.2}), x, atol=1e-5)
    scores = np.asarray(template_similarities(model, embed(model, x), templates.astype(np.float32)))
    for where in (tmp_path / "run", folder):  # the run folder or the bundle itself
        names, rows = predict_images(where, films)
        assert names == list(CLASS_NAMES)
        np.testing.assert_allclose([r[2] for r in rows], scores, rtol=1e-4, atol=1e-5)
        assert [r[1] for r in rows] == [CLASS_NAMES[i] for i in np.argmax(scores, axis=1)]


def test_old_layout_bundle_json_still_predicts(tmp_path, films):
    keras.utils.set_random_seed(4)
    model = build_single_net((SIZE, SIZE, 1), nf=2, depths=(1,), fc_units=4)
    run = tmp_path / "old_run"
    run.mkdir()
    model.save(run / "single.keras")
    write_bundle_json(run, {"single": bundle_entry("single", "single.keras", DATA, _config())})
    names, rows = predict_images(run, films, arm="single")
    x = prepare_images(films, {"image_size": SIZE, "crop_fraction": 0.0, "mean": 0.45, "std": 0.2})
    np.testing.assert_allclose([r[2] for r in rows], model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    # The same model in the shared layout gives the same answer.
    write_arm_bundle(tmp_path / "new_run", "single", model, DATA, _config(), seed=0)
    _, new_rows = predict_images(tmp_path / "new_run", films, arm="single")
    np.testing.assert_allclose([r[2] for r in new_rows], [r[2] for r in rows], rtol=1e-5, atol=1e-6)
    code, printed, _ = run_cli(["covidnet-siamese", "predict", "--model", run, "--arm", "single",
                                *films, "--json"])
    document = json.loads(printed)
    assert code == 0 and [p["class"] for p in document["predictions"]] == [r[1] for r in rows]


def test_bundle_refused_without_metadata_or_of_another_paper(tmp_path, films):
    from shared.testing.bad_input import assert_one_line_error

    model = build_single_net((SIZE, SIZE, 1), nf=2, depths=(1,), fc_units=4)
    folder = write_arm_bundle(tmp_path / "run", "single", model, DATA, _config(), seed=0)
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "paper": "heatmap_loss"}))
    assert_one_line_error(["covidnet-siamese", "predict", "--model", str(folder), str(films[0])],
                          "metadata.json", "'paper'", "covidnet_siamese")
    (folder / "metadata.json").unlink()
    (tmp_path / "run" / "bundles" / "other").mkdir()
    assert_one_line_error(["covidnet-siamese", "predict", "--model", str(folder), str(films[0])],
                          "metadata.json", "not found")
