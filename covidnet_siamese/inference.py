"""The saved bundles of a run and classification of new images (`predict`).

A run keeps each arm's model of its first seed as a bundle in the shared layout
(`shared.io.bundle`): `RUN_DIR/bundles/<arm>/` holds `config.json`,
`model.weights.h5` and `metadata.json`, whose `preprocessing` block gives the image
side, the border crop and the training set's global mean and standard deviation,
and whose `extra` block the net ("siamese" / "single") and, for the siamese net, the
class templates (mean training embedding per class, Section 3.2.2). With it
`predict` needs nothing but the bundle (or the run folder): the image goes through
the paper's preprocessing (grey, INTER_AREA, /255 or /65535, training statistics)
and the model.

Run folders written before the shared layout hold `bundle.json` (class names and
per-arm entries naming `<arm>.keras`); `read_bundle` still reads them.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from covidnet_siamese.config import CLASS_NAMES
from covidnet_siamese.data import preprocess_image, read_grayscale, standardize
from shared.io.atomic import write_json
from shared.io.bundle import (BUNDLES_DIR, METADATA_FILE, WEIGHTS_FILE, bundle_metadata, is_bundle, load_bundle_model,
                              read_metadata, resolve_bundle, write_bundle)

PAPER = "covidnet_siamese"
BUNDLE_FILE = "bundle.json"  # the layout of earlier versions, still read
REFERENCE = "Siamesifying the COVID-Net (siamese network with class templates vs the single COVID-Net)"


def bundle_entry(arm, model_file, data, config, templates=None) -> dict:
    """What `predict` needs of one arm: its model file, preprocessing and templates."""
    return {"model": str(model_file), "net": "siamese" if arm == "siamese" else "single",
            "image_size": int(config.image_size),
            "crop_fraction": float(config.crop_fraction if arm == "single_cropped" else 0.0),
            "mean": float(data.mean), "std": float(data.std),
            "templates": None if templates is None else np.asarray(templates, float).tolist()}


def write_bundle_json(run_dir, arms: dict) -> Path:
    """Writes the earlier versions' `bundle.json` (kept for tests of the old layout)."""
    return write_json(Path(run_dir) / BUNDLE_FILE, {"class_names": list(CLASS_NAMES), "arms": arms})


def arm_metadata(arm, data, config, templates=None, *, run_dir, seed) -> dict:
    """The shared-layout metadata of one arm's bundle."""
    entry = bundle_entry(arm, "", data, config, templates)
    size = entry["image_size"]
    net = entry["net"]
    outputs = ({"pred": {"type": "similarity", "format": "classification", "num_channels": len(CLASS_NAMES),
                         "spatial_shape": [1], "dtype": "float32", "value_range": [-1, 1],
                         "channel_def": {str(i): c for i, c in enumerate(CLASS_NAMES)}}}
               if net == "siamese" else
               {"pred": {"type": "probabilities", "format": "classification", "num_channels": len(CLASS_NAMES),
                         "spatial_shape": [1], "dtype": "float32", "value_range": [0, 1],
                         "channel_def": {str(i): c for i, c in enumerate(CLASS_NAMES)}}})
    return bundle_metadata(
        paper=PAPER, name=arm, task="3-class chest X-ray classification (normal, pneumonia, COVID-19)",
        description=(f"The '{arm}' arm of the run ({'siamese net: similarity to class templates' if net == 'siamese' else 'single COVID-Net, softmax'}), "
                     f"preset {config.name}, the epoch of best balanced validation accuracy."),
        inputs={"image": {"type": "image", "format": "radiograph", "modality": "CR", "num_channels": 1,
                          "spatial_shape": [size, size], "dtype": "float32", "value_range": ["-inf", "inf"],
                          "is_patch_data": False, "channel_def": {"0": "image"}}},
        outputs=outputs,
        preprocessing={"reader": "shared.io.images.read_grayscale (8-bit / 255, 16-bit / 65535)",
                       "image_size": size, "crop_fraction": entry["crop_fraction"],
                       "resize": "INTER_AREA", "mean": entry["mean"], "std": entry["std"],
                       "normalisation": "(x - mean) / std with the training set's global statistics"},
        training={"run": str(Path(run_dir).resolve()), "seed": int(seed), "preset": config.name,
                  "selected_by": "epoch of best balanced validation accuracy (first seed of the run)"},
        data_source="the run's COVIDx-layout training split (synthetic unless --data named a COVIDx folder)",
        data_type="png", references=[REFERENCE],
        extra={"net": net, "templates": entry["templates"]})


def write_arm_bundle(run_dir, arm, model, data, config, templates=None, *, seed) -> Path:
    """Writes `RUN_DIR/bundles/<arm>/` (shared layout); returns the folder."""
    return write_bundle(Path(run_dir) / BUNDLES_DIR / arm, model,
                        arm_metadata(arm, data, config, templates, run_dir=run_dir, seed=seed))


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


def read_bundle(path, arm: str) -> dict:
    """What `predict` needs of `arm`, checked: from a bundle folder, a run folder's
    `bundles/<arm>`, or (earlier versions) a run folder's `bundle.json`.

    Raises:
        ValueError: the folder holds no (valid) bundle, or not this arm; the message
            names the file, the field and what it must hold.
    """
    path = Path(path)
    if is_bundle(path) or (path / BUNDLES_DIR).is_dir():
        return _read_shared_bundle(resolve_bundle(path, name=None if is_bundle(path) else arm))
    if (path / WEIGHTS_FILE).is_file() and not (path / BUNDLE_FILE).is_file():
        return _read_shared_bundle(path)  # a bundle that lost its metadata: read_metadata says so
    return _read_legacy_bundle(path, arm)


def _read_shared_bundle(folder) -> dict:
    meta = read_metadata(folder, paper=PAPER)
    path = folder / METADATA_FILE
    extra, prep = meta.get("extra") or {}, meta.get("preprocessing") or {}
    arm = meta["name"]
    channels = meta["network_data_format"]["outputs"]["pred"].get("channel_def") or {}
    names = [name for _, name in sorted(channels.items(), key=lambda kv: int(kv[0]))]
    entry = {"net": extra.get("net"), "templates": extra.get("templates"), "class_names": names}
    for key in ("image_size", "crop_fraction", "mean", "std"):
        if key not in prep:
            raise ValueError(f"{path}: bundle {arm!r} lacks field 'preprocessing.{key}'")
        entry[key] = prep[key]
    _check_entry(path, arm, entry, names)
    entry["bundle"] = folder
    return entry


def _read_legacy_bundle(run_dir, arm: str) -> dict:
    path = Path(run_dir) / BUNDLE_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no model bundle here; expected a bundle folder ({METADATA_FILE}), "
                         f"or the folder of a finished `covidnet-siamese run` (bundles/, or "
                         f"{BUNDLE_FILE} of earlier versions)")
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
    _check_entry(path, arm, entry, names)
    if not isinstance(entry["model"], str) or not entry["model"]:
        raise ValueError(f"{path}: arm {arm!r}, field 'model': expected a file name. Received: {entry['model']!r}")
    entry["model_path"] = Path(run_dir) / entry["model"]
    if not entry["model_path"].is_file():
        raise ValueError(f"{entry['model_path']}: model file named in {path} (field 'model') not found")
    return entry


def _check_entry(path, arm, entry, names) -> None:
    """Checks (and converts in place) the net, preprocessing numbers and templates."""
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


def prepare_images(paths, entry) -> np.ndarray:
    """Images as the arm saw them in training: [N, S, S, 1] float32, standardised."""
    images = [preprocess_image(read_grayscale(p), entry["image_size"], crop_fraction=entry["crop_fraction"])
              for p in paths]
    return standardize(np.stack(images)[..., None], entry["mean"], entry["std"])


def predict_images(run_dir, paths, *, arm="siamese"):
    """Classifies image files with a run's saved arm.

    Args:
        run_dir: str or Path. A bundle folder, or a run folder holding `bundles/`
            (or, from earlier versions, `bundle.json`).
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
    if "bundle" in entry:
        model = load_bundle_model(entry["bundle"])
        source = entry["bundle"] / METADATA_FILE
    else:
        try:
            model = keras.saving.load_model(entry["model_path"])
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{entry['model_path']}: not a readable Keras model file; expected the "
                             f"`.keras` file the run saved ({type(err).__name__})") from None
        source = Path(run_dir) / BUNDLE_FILE
    names = entry["class_names"]
    if entry["net"] == "siamese":
        embeddings = embed(model, x)
        if embeddings.shape[1] != entry["templates"].shape[1]:
            raise ValueError(f"{source}: arm {arm!r}, field 'templates': expected "
                             f"{embeddings.shape[1]} features per row (the model's embedding), found "
                             f"{entry['templates'].shape[1]}")
        scores = template_similarities(model, embeddings, entry["templates"])
    else:
        scores = np.asarray(model.predict(x, verbose=0))
        if scores.shape[1] != len(names):
            raise ValueError(f"{source}: field 'class_names': expected "
                             f"{scores.shape[1]} names (the model's outputs), found {len(names)}")
    return names, [(str(p), names[int(np.argmax(s))], [float(v) for v in s]) for p, s in zip(paths, scores)]
