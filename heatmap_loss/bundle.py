"""The saved classifier of each group and `predict` on image files.

Each group's search keeps, in `RUN_DIR/bundles/<group>/` (`shared.io.bundle`
layout), the classifier of its trial with the highest validation accuracy (the test
set is never used to choose it), restored to its best epoch by early stopping. Only
the classifier is kept: the heatmap penalty is a training loss, not part of the
model a user runs.

`predict` reads a PNG / JPEG / TIFF image (8 or 16 bit, grey or colour), maps it to
the 0-255 intensity range the model was trained on (an 8-bit image as it is, a 16-bit
image scaled by 255 / 65535), resizes it to the model grid with OpenCV's INTER_AREA
(as the training images were) and applies the classifier; its own first layers do the
intensity normalisation ("unit": / 255, "vgg16": ImageNet channel means).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.io.bundle import (BUNDLES_DIR, bundle_metadata, load_bundle_model, read_metadata,
                              resolve_bundle, write_bundle)

PAPER = "heatmap_loss"
REFERENCE = ("Heatmap-based loss for explainable classification (thesis): a cross-entropy "
             "classifier trained with a HiResCAM penalty outside the heart")


def group_metadata(config, *, group: str, classes, run_dir, seed: int, source: dict,
                   record: dict) -> dict:
    """The bundle metadata of one group's chosen classifier.

    Args:
        config: HeatmapLossConfig.
        group: "cce" or "heatmap".
        classes: sequence of class names (output order).
        run_dir: Path. The run folder.
        seed: int. The run's seed.
        source: dict. How the data were made (the protocol's test-set block).
        record: dict. The chosen trial's record (trial index, learning rate, val accuracy).
    """
    height, width = (int(v) for v in config.image_size)
    preprocessing = config.preprocessing or ("vgg16" if config.backbone_weights == "imagenet" else "unit")
    kind = source.get("kind") or source.get("source") or "synthetic"
    return bundle_metadata(
        paper=PAPER, name=group,
        task=f"{len(classes)}-class classification of a grey-scale cardiac image",
        description=(f"VGG16-style classifier of the '{group}' group "
                     f"({'cross-entropy alone' if group == 'cce' else 'MSE + HiResCAM penalty outside the heart'}), "
                     f"preset {config.preset}. Outputs logits; predict reports softmax probabilities."),
        inputs={"image": {"type": "image", "format": "magnitude", "modality": "MR",
                          "num_channels": 1, "spatial_shape": [height, width], "dtype": "float32",
                          "value_range": [0, 255], "is_patch_data": False,
                          "channel_def": {"0": "image"}}},
        outputs={"pred": {"type": "logits", "format": "classification",
                          "num_channels": len(classes), "spatial_shape": [1], "dtype": "float32",
                          "value_range": ["-inf", "inf"],
                          "channel_def": {str(i): str(c) for i, c in enumerate(classes)}}},
        preprocessing={"reader": "shared.io.images.read_grayscale",
                       "intensity": "8-bit values as they are; 16-bit scaled by 255/65535",
                       "resize": {"size": [height, width], "interpolation": "INTER_AREA"},
                       "normalisation": {"kind": preprocessing, "inside_model": True}},
        training={"run": str(Path(run_dir).resolve()), "seed": int(seed), "preset": config.preset,
                  "selected_by": "highest validation accuracy of the group's trials",
                  "trial_index": int(record["trial_index"]),
                  "learning_rate": float(record["learning_rate"]),
                  "val_accuracy": float(record["val_accuracy"])},
        data_source=f"{kind} data of this run ({', '.join(f'{k}={v}' for k, v in sorted(source.items()) if isinstance(v, (str, int, float)))})",
        data_type="png", references=[REFERENCE])


def write_group_bundle(run_dir, classifier, metadata: dict) -> Path:
    """Writes one group's bundle to `RUN_DIR/bundles/<group>`; returns the folder."""
    return write_bundle(Path(run_dir) / BUNDLES_DIR / metadata["name"], classifier, metadata)


def read_image(path, size) -> np.ndarray:
    """An image file as the model sees it: float32 [H, W, 1], 0-255, INTER_AREA."""
    import cv2

    from shared.io.images import read_grayscale

    grey = read_grayscale(path, min_side=1) * 255.0
    height, width = (int(v) for v in size)
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)[..., None]


def predict_files(model_path, paths, *, group=None):
    """Classifies image files with a saved group classifier.

    Args:
        model_path: str or Path. A bundle folder, or a run folder (with `group`, or
            its only bundle).
        paths: image files (PNG / JPEG / TIFF).
        group: str, optional. "cce" or "heatmap" when `model_path` is a run folder.

    Returns:
        (class names, list of (path, predicted class, softmax probabilities)).
    """
    import keras

    folder = resolve_bundle(model_path, name=group)
    meta = read_metadata(folder, paper=PAPER)
    spec = meta["network_data_format"]["inputs"]["image"]
    classes = [name for _, name in sorted(meta["network_data_format"]["outputs"]["pred"]["channel_def"].items(),
                                          key=lambda kv: int(kv[0]))]
    model = load_bundle_model(folder)
    x = np.stack([read_image(p, spec["spatial_shape"]) for p in paths]).astype(np.float32)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model(x, training=False), axis=-1))
    if probabilities.shape[1] != len(classes):
        raise ValueError(f"{folder / 'metadata.json'}: field 'network_data_format.outputs.pred.channel_def': "
                         f"expected {probabilities.shape[1]} classes (the model's outputs), found {len(classes)}")
    return classes, [(str(p), classes[int(np.argmax(row))], [float(v) for v in row])
                     for p, row in zip(paths, probabilities)]
