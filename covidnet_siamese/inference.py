"""The saved bundle of a run and classification of new images (`predict`).

A run folder holds, beside each arm's `<arm>.keras`, `bundle.json`: the class names and,
per arm, the preprocessing (image side, border crop, the training set's global mean
and standard deviation) and, for the siamese net, the class templates (mean training
embedding per class, Section 3.2.2). With it `predict` needs nothing but the run
folder: the image goes through the paper's preprocessing (grey, INTER_AREA, /255 or
/65535, training statistics) and the model.
"""

import json
import zipfile
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


def _number(path, arm, entry, key, *, low=None, high=None, positive=False, integer=False):
    """Field `key` of an arm entry as a finite number inside its range, or a ValueError."""
    value = entry[key]
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or (integer and value != int(value)):
        raise ValueError(f"{path}: arm {arm!r}, field {key!r}: expected {kind}. Received: {value!r}")
    if (positive and value <= 0) or (low is not None and value < low) or (high is not None and value >= high):
        bound = "> 0" if positive else f"in [{low}, {high})"
        raise ValueError(f"{path}: arm {arm!r}, field {key!r}: expected a value {bound}. Received: {value!r}")
    return int(value) if integer else float(value)


def _templates(path, arm, value, n_classes) -> np.ndarray:
    """Field 'templates': a finite [classes, features] matrix, one row per class name."""
    try:
        templates = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        templates = None
    if templates is None or templates.ndim != 2 or templates.shape[0] != n_classes or templates.shape[1] < 1:
        shape = "ragged" if templates is None else list(np.shape(templates))
        raise ValueError(f"{path}: arm {arm!r}, field 'templates': expected a {n_classes} x D matrix "
                         f"(one row per class name). Received: shape {shape}")
    if not np.all(np.isfinite(templates)):
        raise ValueError(f"{path}: arm {arm!r}, field 'templates': expected finite values; found NaN/Inf")
    return templates.astype(np.float32)


def read_bundle(run_dir, arm: str) -> dict:
    """The bundle entry of `arm` in `run_dir`, checked.

    Raises:
        ValueError: the folder holds no (valid) bundle, or not this arm; the message
            names the file, the field and what it must hold.
    """
    path = Path(run_dir) / BUNDLE_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no model bundle here; expected the folder of a finished "
                         f"`covidnet-siamese run`")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(document, dict) or not isinstance(document.get("arms"), dict):
        raise ValueError(f"{path}: field 'arms': expected an object mapping arm names to their entries")
    names = document.get("class_names", list(CLASS_NAMES))
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names) \
            or len(set(names)) != len(names):
        raise ValueError(f"{path}: field 'class_names': expected a list of distinct class names. "
                         f"Received: {names!r}")
    arms = document["arms"]
    if arm not in arms:
        raise ValueError(f"{path}: field 'arms' has no {arm!r}; expected one of {sorted(arms)}")
    if not isinstance(arms[arm], dict):
        raise ValueError(f"{path}: field 'arms.{arm}': expected an object")
    entry = dict(arms[arm])
    for key in ("model", "net", "image_size", "crop_fraction", "mean", "std"):
        if key not in entry:
            raise ValueError(f"{path}: arm {arm!r} lacks field {key!r}")
    if entry["net"] not in ("siamese", "single"):
        raise ValueError(f"{path}: arm {arm!r}, field 'net': expected 'siamese' or 'single'. "
                         f"Received: {entry['net']!r}")
    entry["image_size"] = _number(path, arm, entry, "image_size", positive=True, integer=True)
    entry["crop_fraction"] = _number(path, arm, entry, "crop_fraction", low=0.0, high=0.5)
    entry["mean"] = _number(path, arm, entry, "mean")
    entry["std"] = _number(path, arm, entry, "std", positive=True)
    if entry["net"] == "siamese":
        if entry.get("templates") is None:
            raise ValueError(f"{path}: arm {arm!r} lacks field 'templates' (the siamese net needs them)")
        entry["templates"] = _templates(path, arm, entry["templates"], len(names))
    entry["class_names"] = list(names)
    if not isinstance(entry["model"], str) or not entry["model"]:
        raise ValueError(f"{path}: arm {arm!r}, field 'model': expected a file name. Received: {entry['model']!r}")
    entry["model_path"] = Path(run_dir) / entry["model"]
    if not entry["model_path"].is_file():
        raise ValueError(f"{entry['model_path']}: model file named in {path} (field 'model') not found")
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
    try:
        model = keras.saving.load_model(entry["model_path"])
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{entry['model_path']}: not a readable Keras model file; expected the "
                         f"`.keras` file the run saved ({type(err).__name__})") from None
    names = entry["class_names"]
    if entry["net"] == "siamese":
        embeddings = embed(model, x)
        if embeddings.shape[1] != entry["templates"].shape[1]:
            raise ValueError(f"{Path(run_dir) / BUNDLE_FILE}: arm {arm!r}, field 'templates': expected "
                             f"{embeddings.shape[1]} features per row (the model's embedding), found "
                             f"{entry['templates'].shape[1]}")
        scores = template_similarities(model, embeddings, entry["templates"])
    else:
        scores = np.asarray(model.predict(x, verbose=0))
        if scores.shape[1] != len(names):
            raise ValueError(f"{Path(run_dir) / BUNDLE_FILE}: field 'class_names': expected "
                             f"{scores.shape[1]} names (the model's outputs), found {len(names)}")
    return names, [(str(p), names[int(np.argmax(s))], [float(v) for v in s]) for p, s in zip(paths, scores)]
