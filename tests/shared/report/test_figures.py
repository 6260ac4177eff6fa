"""Plotting: overlay arithmetic and files written."""

import numpy as np
import pytest
from matplotlib import colormaps

from shared.report import figures


def test_overlay_blend_by_hand():
    image = np.zeros((4, 4), np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 2.0
    out = figures.overlay(image, heat, alpha=0.5)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    jet = colormaps["jet"]
    np.testing.assert_array_equal(out[0, 0], np.round(0.5 * np.array(jet(1.0)[:3]) * 255))
    np.testing.assert_array_equal(out[1, 1], np.round(0.5 * np.array(jet(0.0)[:3]) * 255))
    # alpha 0 keeps the (min-max scaled) image; alpha 1 is the colour map alone.
    ramp = np.arange(16, dtype=float).reshape(4, 4)
    np.testing.assert_array_equal(figures.overlay(ramp, heat, alpha=0.0)[..., 0],
                                  np.round(ramp / 15 * 255).astype(np.uint8))
    np.testing.assert_array_equal(figures.overlay(ramp, heat, alpha=1.0),
                                  figures.overlay(np.zeros((4, 4)), heat, alpha=1.0))


def test_overlay_resizes_heatmap_bilinearly():
    heat = np.array([[0.0, 1.0]])
    resized = figures.resize_bilinear(heat, (1, 4))
    np.testing.assert_allclose(resized, [[0.0, 0.25, 0.75, 1.0]])
    out = figures.overlay(np.zeros((1, 4, 3), np.uint8), heat, alpha=1.0)
    expected = np.round(colormaps["jet"](np.array([0.0, 0.25, 0.75, 1.0]))[:, :3] * 255)
    np.testing.assert_array_equal(out[0], expected)


def test_overlay_errors():
    with pytest.raises(ValueError, match="alpha"):
        figures.overlay(np.zeros((2, 2)), np.zeros((2, 2)), alpha=2)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        figures.overlay(np.zeros((2, 2, 2, 2)), np.zeros((2, 2)))


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 8, 8))
    heatmaps = rng.uniform(size=(3, 2, 2))
    paths = [
        figures.save_overlay_grid(images, heatmaps, tmp_path / "a" / "overlay.png",
                                   titles=["x", "y", "z"], ncols=2),
        figures.save_image_grid(list(images[..., None]), tmp_path / "grid.png"),
        figures.plot_history({"loss": [1.0, 0.5], "val_loss": [1.2, 0.7], "accuracy": [0.5, 0.8]},
                              tmp_path / "history.png"),
        figures.save_confusion_matrix(np.array([[5, 1], [2, 7]]), ["a", "b"],
                                       tmp_path / "cm.png", normalize=True),
    ]
    for path in paths:
        assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2 titles for 3"):
        figures.save_image_grid(images, tmp_path / "bad.png", titles=["a", "b"])
    with pytest.raises(ValueError, match="3 class names"):
        figures.save_confusion_matrix(np.eye(2), ["a", "b", "c"], tmp_path / "bad.png")
