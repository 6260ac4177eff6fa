"""The synthetic chest X-ray generator: layout, determinism, class signs, artefacts."""

import numpy as np
import pytest

from covidnet_siamese.data import load_split, parse_split_file
from covidnet_siamese.phantom import MASK_ARTEFACT, MASK_LUNG, draw_chest_xrays, generate_covidx


def test_generator_writes_covidx_layout(tmp_path):
    counts = {"train": (3, 2, 1), "val": (1, 1, 1), "test": (2, 1, 1)}
    written = generate_covidx(tmp_path, counts=counts, size=40, seed=0)
    assert written["train"] == tmp_path / "train_split.txt"
    entries, skipped = parse_split_file(written["train"])
    assert skipped == [] and np.bincount([e.label for e in entries]).tolist() == [4, 3, 2]
    assert all(len(line.split()) == 4 for line in written["test"].read_text().splitlines())
    test = load_split(tmp_path, "test", size=32)
    assert test.images.shape == (4, 32, 32, 1) and test.images.min() >= 0 and test.images.max() <= 1
    assert all((tmp_path / "masks" / "test" / e.filename).is_file() for e in test.entries)
    with pytest.raises(ValueError, match="seed"):
        generate_covidx(tmp_path, counts=counts, seed=None)


def test_generator_is_seeded_and_classes_differ():
    labels = np.repeat([0, 1, 2], 24)
    a, masks = draw_chest_xrays(labels, size=64, rng=5, artefact_strength=0.0)
    b, _ = draw_chest_xrays(labels, size=64, rng=5, artefact_strength=0.0)
    np.testing.assert_array_equal(a, b)
    lungs = masks == MASK_LUNG
    lower = np.zeros((64, 64), bool)
    lower[32:] = True
    def lung_mean(c, region):
        sel = labels == c
        return np.mean([img[m & region].mean() for img, m in zip(a[sel].astype(float), lungs[sel])])
    everywhere = np.ones((64, 64), bool)
    # Opacities brighten the lungs; COVID-19 most in the lower zones.
    assert lung_mean(1, everywhere) > lung_mean(0, everywhere) + 2
    assert lung_mean(2, lower) > lung_mean(0, lower) + 4
    with pytest.raises(ValueError, match="labels"):
        draw_chest_xrays([3], size=16, rng=0)


def test_artefacts_follow_the_class():
    labels = np.repeat([0, 2], 60)
    _, masks = draw_chest_xrays(labels, size=64, rng=1, artefact_strength=1.0)
    art = (masks == MASK_ARTEFACT)
    tag_corner = art[:, :8, :16].any(axis=(1, 2))
    assert tag_corner[labels == 2].mean() > tag_corner[labels == 0].mean() + 0.4
