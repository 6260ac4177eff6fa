"""Figures for run folders: heatmap overlays, image grids, training curves, confusion matrices,
paired differences.

NumPy in, PNG files out. Uses matplotlib's object API with the Agg canvas only (no
`pyplot`, no global figure state, no display needed), so it is safe in headless runs,
tests and worker threads. Attribution maps come from `shared.explain`; convert them with
`.numpy()` before drawing.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shared.io.atomic import save_figure


def _new_figure(figsize):
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    return save_figure(fig, path, bbox_inches="tight")


def _minmax(a):
    a = np.asarray(a, dtype=np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("Cannot draw an array that is all NaN or contains infinities.")
    if hi - lo <= 0:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def _image_rgb(image):
    """[H,W], [H,W,1] or [H,W,3] -> float RGB in [0, 1] (uint8 / 255, floats min-max)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"image must have shape [H, W], [H, W, 1] or [H, W, 3]. Received shape {image.shape}"
        )
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return _minmax(image)


def resize_bilinear(array, shape):
    """Bilinear resize of a 2D array with half-pixel centres (as cv2 / tf.image.resize)."""
    array = np.asarray(array, dtype=np.float64)
    out_h, out_w = shape

    def coords(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    r0, r1, fr = coords(array.shape[0], out_h)
    c0, c1, fc = coords(array.shape[1], out_w)
    top = array[r0][:, c0] * (1 - fc) + array[r0][:, c1] * fc
    bottom = array[r1][:, c0] * (1 - fc) + array[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def overlay(image, heatmap, alpha=0.4, *, cmap="jet", normalize=True):
    """Blends a colour-mapped heatmap onto an image.

    `out = (1 - alpha) * image_rgb + alpha * cmap(heatmap)`, with the image scaled to
    [0, 1] (uint8 divided by 255, other dtypes min-max), the heatmap resized bilinearly to
    the image grid and min-max scaled to [0, 1] (a constant map becomes 0).

    Args:
        image: array [H, W], [H, W, 1] or [H, W, 3].
        heatmap: array [h, w], any range.
        alpha: float in [0, 1], default 0.4. Weight of the heatmap.
        cmap: str, default "jet". A matplotlib colormap name.
        normalize: bool, default True. Min-max the heatmap; set False for maps already in
            [0, 1] that should keep their absolute scale (values are clipped).

    Returns:
        uint8 array [H, W, 3].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]. Received: alpha={alpha}")
    rgb = _image_rgb(image)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim == 3 and heatmap.shape[-1] == 1:
        heatmap = heatmap[..., 0]
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must have shape [h, w]. Received shape {heatmap.shape}")
    if heatmap.shape != rgb.shape[:2]:
        heatmap = resize_bilinear(heatmap, rgb.shape[:2])
    heat = _minmax(heatmap) if normalize else np.clip(heatmap, 0.0, 1.0)
    heat_rgb = colormaps[cmap](heat)[..., :3]
    out = (1.0 - alpha) * rgb + alpha * heat_rgb
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def _grid(n, ncols):
    ncols = max(1, min(ncols, n))
    return int(math.ceil(n / ncols)), ncols


def _check_titles(titles, n):
    if titles is not None and len(titles) != n:
        raise ValueError(f"Got {len(titles)} titles for {n} images.")


def save_image_grid(images, path, titles=None, ncols=4, *, cmap="gray"):
    """Saves images (a list or array [N, H, W(, C)]) as a grid PNG; returns the path."""
    images = list(images)
    if not images:
        raise ValueError("save_image_grid needs at least one image.")
    _check_titles(titles, len(images))
    nrows, ncols = _grid(len(images), ncols)
    fig = _new_figure((2.5 * ncols, 2.5 * nrows))
    for i, image in enumerate(images):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            ax.imshow(image, cmap=cmap)
        else:
            ax.imshow(_image_rgb(image))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    return _save(fig, path)


def save_overlay_grid(images, heatmaps, path, titles=None, ncols=4, *, alpha=0.4, cmap="jet"):
    """Saves `overlay(image, heatmap)` for each pair as a grid PNG; returns the path."""
    images, heatmaps = list(images), list(heatmaps)
    if len(images) != len(heatmaps):
        raise ValueError(f"Got {len(images)} images and {len(heatmaps)} heatmaps.")
    overlays = [overlay(im, hm, alpha=alpha, cmap=cmap) for im, hm in zip(images, heatmaps)]
    return save_image_grid(overlays, path, titles=titles, ncols=ncols)


def plot_history(history_dict, path, *, title=None):
    """Training curves, one panel per metric with its `val_` counterpart; returns the path.

    Args:
        history_dict: dict name -> list of per-epoch values, or a keras `History`.
        path: output PNG path.
        title: str, optional. Figure title.
    """
    history = getattr(history_dict, "history", history_dict)
    if not history:
        raise ValueError("plot_history needs a non-empty history dict.")
    names = sorted({k[4:] if k.startswith("val_") else k for k in history})
    fig = _new_figure((4.0 * len(names), 3.2))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for key, label in ((name, "train"), ("val_" + name, "validation")):
            if key in history:
                values = np.asarray(history[key], dtype=float)
                ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_confusion_matrix(cm, class_names, path, *, normalize=False, title=None):
    """Confusion matrix heat map with counts (rows = true class); returns the path.

    Args:
        cm: array [K, K], rows true, columns predicted.
        class_names: sequence of K names.
        path: output PNG path.
        normalize: bool, default False. Show row fractions instead of counts.
        title: str, optional.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square [K, K] array. Received shape {cm.shape}")
    if len(class_names) != cm.shape[0]:
        raise ValueError(f"Got {len(class_names)} class names for a {cm.shape[0]}-class matrix.")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1e-12) if normalize else cm
    k = cm.shape[0]
    fig = _new_figure((1.2 + 0.9 * k, 1.0 + 0.8 * k))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = shown.max() / 2 if shown.size else 0
    for r in range(k):
        for c in range(k):
            text = f"{shown[r, c]:.2f}" if normalize else f"{int(round(cm[r, c]))}"
            ax.text(c, r, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[r, c] > threshold else "black")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def save_paired_differences(arms, path, *, metric, intervals=None, title=None):
    """Paired values, one line per unit across the arms, and each pair's differences.

    Left: every unit's values joined across the arms (a unit that every arm ranks
    the same way gives parallel lines). Right: for each pair of arms (in the order
    of `itertools.combinations`), a strip of the differences a - b, one dot per
    unit, with their mean and, when given, its interval; the dashed line is zero.

    Args:
        arms: dict arm -> sequence of float, one value per unit, every arm in the
            same unit order.
        path: output PNG path.
        metric: str. Axis label.
        intervals: dict (a, b) -> (low, high), optional. Interval of each pair's mean
            difference.
        title: str, optional. Figure title.

    Returns:
        The path written.
    """
    import itertools

    names = list(arms)
    values = np.asarray([np.asarray(arms[n], dtype=float) for n in names])
    if len(names) < 2 or values.ndim != 2 or values.shape[1] < 1:
        raise ValueError(f"arms: expected at least 2 arms of equal, non-zero length, got "
                         f"{ {n: len(arms[n]) for n in names} }")
    pairs = list(itertools.combinations(range(len(names)), 2))
    fig = _new_figure((2.0 + 1.2 * len(names) + 1.3 * len(pairs), 3.8))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.2 * len(names), 1.3 * len(pairs) + 0.6])
    ax = fig.add_subplot(grid[0, 0])
    x = np.arange(len(names))
    for unit in values.T:
        ax.plot(x, unit, color="tab:gray", alpha=0.6, marker="o", ms=4, lw=1)
    ax.plot(x, values.mean(axis=1), color="tab:red", marker="D", ms=6, lw=2, label="mean")
    ax.set_xticks(x, labels=names)
    ax.set_xlim(-0.4, len(names) - 0.6)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: one line per unit (n={values.shape[1]})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(grid[0, 1])
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    for i, (a, b) in enumerate(pairs):
        d = values[a] - values[b]
        ax.scatter(i + rng.uniform(-0.12, 0.12, d.size), d, s=18, alpha=0.7, zorder=3)
        ax.hlines(d.mean(), i - 0.25, i + 0.25, color="tab:red", lw=2, zorder=4)
        interval = (intervals or {}).get((names[a], names[b]))
        if interval is not None:
            ax.vlines(i + 0.3, interval[0], interval[1], color="tab:red", lw=1.5, zorder=4)
    ax.axhline(0.0, color="black", ls="--", lw=1)
    ax.set_xticks(range(len(pairs)), labels=[f"{names[a]}\n- {names[b]}" for a, b in pairs],
                  fontsize=8)
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    ax.set_ylabel(f"{metric}, a - b")
    ax.set_title("paired differences (bar: mean, line: interval)", fontsize=9)
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
