"""The saved bundle of a run and classification of new images (`predict`).

A run folder holds, beside each arm's `<arm>.keras`, `bundle.json`: the class names and,
per arm, the preprocessing (image side, border crop, the training set's global mean
and standard deviation) and, for the siamese net, the class templates (mean training
embedding per class, Section 3.2.2). With it `predict` needs nothing but the run
folder: the image goes through the paper's preprocessing (grey, INTER_AREA, /255 or
/65535, training statistics) and the model.
"""

import json
from pathlib import Path

import numpy as np

from covidnet_siamese.config import CLASS_NAMES
from covidnet_siamese.data import preprocess_image, read_grayscale, standardize
from shared.io.atomic import write_json

BUNDLE_FILE = "bundle.json"


def bundle_entry(arm, model_file, data, config, templates=None) -> dict:
    """What `predict` needs of one arm: its model file, preprocessing and templates."""
    return {"model": str(model_file), "net": "siamese" if arm == "siamese" else "single",
            "image_size": int(config.image_size),
            "crop_fraction": float(config.crop_fraction if arm == "single_cropped" else 0.0),
            "mean": float(data.mean), "std": float(data.std),
            "templates": None if templates is None else np.asarray(templates, float).tolist()}


def write_bundle(run_dir, arms: dict) -> Path:
    """Writes `bundle.json` (class names and the per-arm entries of `bundle_entry`)."""
    return write_json(Path(run_dir) / BUNDLE_FILE, {"class_names": list(CLASS_NAMES), "arms": arms})


def read_bundle(run_dir, arm: str) -> dict:
    """The bundle entry of `arm` in `run_dir`, checked.

    Raises:
        ValueError: the folder holds no (valid) bundle, or not this arm.
    """
    path = Path(run_dir) / BUNDLE_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no model bundle here; expected the folder of a finished "
                         f"`covidnet-siamese run`")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    arms = document.get("arms", {}) if isinstance(document, dict) else {}
    if arm not in arms:
        raise ValueError(f"{path}: field 'arms' has no {arm!r}; expected one of {sorted(arms)}")
    entry = dict(arms[arm])
    for key in ("model", "net", "image_size", "crop_fraction", "mean", "std"):
        if key not in entry:
            raise ValueError(f"{path}: arm {arm!r} lacks field {key!r}")
    if not (np.isfinite(entry["mean"]) and np.isfinite(entry["std"]) and entry["std"] > 0):
        raise ValueError(f"{path}: arm {arm!r}: fields 'mean'/'std' must be finite with std > 0")
    if entry["net"] == "siamese" and not entry.get("templates"):
        raise ValueError(f"{path}: arm {arm!r} lacks field 'templates' (the siamese net needs them)")
    entry["class_names"] = list(document.get("class_names", CLASS_NAMES))
    entry["model_path"] = Path(run_dir) / entry["model"]
    if not entry["model_path"].is_file():
        raise ValueError(f"{entry['model_path']}: model file named in {path} not found")
    return entry


def prepare_images(paths, entry) -> np.ndarray:
    """Images as the arm saw them in training: [N, S, S, 1] float32, standardised."""
    images = [preprocess_image(read_grayscale(p), entry["image_size"], crop_fraction=entry["crop_fraction"])
              for p in paths]
    return standardize(np.stack(images)[..., None], entry["mean"], entry["std"])


def predict_images(run_dir, paths, *, arm="siamese"):
    """Classifies image files with a run's saved arm.

    Args:
        run_dir: str or Path. A run folder holding `bundle.json`.
        paths: image files (PNG / JPEG, 8 or 16 bit, grey or colour).
        arm: str, default "siamese" ("single" or "single_cropped" too).

    Returns:
        (class names, list of (path, predicted class name, per-class scores)): scores are
        similarities to the class templates (siamese) or softmax probabilities.
    """
    import keras

    from covidnet_siamese.training import template_similarities, embed

    entry = read_bundle(run_dir, arm)
    x = prepare_images(paths, entry)
    model = keras.saving.load_model(entry["model_path"])
    if entry["net"] == "siamese":
        scores = template_similarities(model, embed(model, x), np.asarray(entry["templates"], np.float32))
    else:
        scores = np.asarray(model.predict(x, verbose=0))
    names = entry["class_names"]
    return names, [(str(p), names[int(np.argmax(s))], [float(v) for v in s]) for p, s in zip(paths, scores)]
