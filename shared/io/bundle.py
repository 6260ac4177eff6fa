"""Model bundles: one folder per saved model, one layout for every paper.

    BUNDLE/
      config.json        the Keras architecture (`keras.saving.serialize_keras_object`)
      model.weights.h5   the weights (`model.save_weights`)
      metadata.json      what the model is for and how to feed it, MONAI-style field
                         names, validated against `bundle.schema.json`

The layout follows keras-hub's presets (config + weights) and MONAI's bundles
(`configs/metadata.json`): `task`, `description`, `intended_use` (always "not for
diagnostic use"), `license`, `data_source`, `data_type`, `network_data_format`
(inputs and outputs: type, format, modality, channels, spatial shape, dtype, value
range, `channel_def` naming the output classes), plus `preprocessing` (how a file
becomes the network's input, intensity normalisation included), `training` (the run
folder, preset, seed and how the model was chosen), `versions` and `extra` (what a
paper's `predict` needs besides, e.g. a siamese net's class templates).

    meta = bundle_metadata(paper="heatmap_loss", name="heatmap", task="...", ...)
    write_bundle("runs/x/bundles/heatmap", classifier, meta)
    meta = read_metadata("runs/x/bundles/heatmap", paper="heatmap_loss")
    model = load_bundle_model("runs/x/bundles/heatmap")

A folder without `metadata.json`, or whose metadata names another paper, is refused
with a ValueError naming the file (the CLI prints it as one line, exit status 2).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from shared.io.atomic import atomic_path, write_json

SCHEMA_ID = "medrepro-bundle/1"
SCHEMA_PATH = Path(__file__).with_name("bundle.schema.json")
METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
BUNDLES_DIR = "bundles"
LICENSE = "Apache-2.0 (code and weights of this reproduction)"
INTENDED_USE = ("Research reproduction of a published method on the data named in "
                "data_source; not for diagnostic use.")


def _versions() -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from shared import __version__
    from shared.tracking.runs import git_revision

    return {"medrepro": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "git_revision": git_revision()}


def image_input_spec(spatial_shape, *, modality: str, channel: str, value_range) -> dict:
    """One single-channel image input in MONAI's `network_data_format` (magnitude, float32,
    not patch data)."""
    return {"type": "image", "format": "magnitude", "modality": modality, "num_channels": 1,
            "spatial_shape": [int(n) for n in spatial_shape], "dtype": "float32",
            "value_range": list(value_range), "is_patch_data": False, "channel_def": {"0": channel}}


def probabilities_output_spec(channels) -> dict:
    """A classification output of probabilities, one channel per name in `channels`."""
    return {"type": "probabilities", "format": "classification", "num_channels": len(channels),
            "spatial_shape": [1], "dtype": "float32", "value_range": [0, 1],
            "channel_def": {str(i): c for i, c in enumerate(channels)}}


def bundle_metadata(*, paper: str, name: str, task: str, description: str, inputs: dict,
                    outputs: dict, preprocessing: dict, training: dict, data_source: str,
                    data_type: str, references=(), extra=None, version="1.0") -> dict:
    """A bundle's metadata.json document (validated when written).

    Args:
        paper: str. The paper package ("heatmap_loss", "covidnet_siamese", "bar_ad").
        name: str. The arm or group the model belongs to.
        task, description: str. What the model does, in a sentence or two.
        inputs, outputs: dict name -> tensor spec (MONAI's `network_data_format`:
            type, format, modality, num_channels, spatial_shape, dtype, value_range,
            channel_def).
        preprocessing: dict. How a file becomes the input (reader, resizing,
            intensity normalisation with its numbers).
        training: dict. "run" (the run folder), "seed", "preset", "selected_by".
        data_source: str. What data the model was trained on.
        data_type: str. The file format `predict` reads ("png", "nifti").
        references: sequence of str. The paper.
        extra: dict, optional. What the paper's `predict` needs besides.
        version: str. The bundle's own version.
    """
    document = {
        "schema": SCHEMA_ID, "version": str(version), "paper": str(paper), "name": str(name),
        "task": task, "description": description, "intended_use": INTENDED_USE,
        "license": LICENSE, "references": [str(r) for r in references],
        "data_source": data_source, "data_type": data_type,
        "network_data_format": {"inputs": inputs, "outputs": outputs},
        "preprocessing": preprocessing, "training": training, "versions": _versions(),
        "files": {"config": CONFIG_FILE, "weights": WEIGHTS_FILE},
    }
    if extra is not None:
        document["extra"] = extra
    return document


def _schema_errors(document) -> list:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))


def validate_metadata(document, path) -> None:
    """Checks a metadata document against `bundle.schema.json`.

    Raises:
        ValueError: naming `path`, the first failing field and what it must hold.
    """
    errors = _schema_errors(document)
    if errors:
        err = errors[0]
        field = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"{path}: field {field!r}: {err.message}")


def write_bundle(folder, model, metadata: dict, arrays=None) -> Path:
    """Writes `model` and `metadata` as a bundle folder; returns the folder.

    The metadata is validated first, so an invalid document leaves no bundle; the
    metadata file is written last, so a folder with metadata.json is complete.

    Args:
        folder: str or Path. The bundle folder (created).
        model: keras.Model.
        metadata: dict from `bundle_metadata`.
        arrays: dict name -> array, optional. Preprocessing arrays too large for JSON
            (a mean volume), written as `<name>.npy` and listed under `files`.
    """
    import keras
    import numpy as np

    folder = Path(folder)
    metadata = dict(metadata)
    if arrays:
        metadata["files"] = {**metadata["files"], **{name: f"{name}.npy" for name in arrays}}
    validate_metadata(metadata, folder / METADATA_FILE)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_FILE).unlink(missing_ok=True)
    for name, value in (arrays or {}).items():
        with atomic_path(folder / f"{name}.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.asarray(value), allow_pickle=False)
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)  # a bundle is for inference: no loss, no optimizer
    write_json(folder / CONFIG_FILE, config, sort_keys=False)
    # The weights are saved from a fresh, uncompiled model built from the written config:
    # a compiled model's `save_weights` also stores its optimizer's slots (Adam: twice the
    # weights again), which a bundle does not need; and the config is proven to rebuild it.
    fresh = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    fresh.set_weights(model.get_weights())
    # Keras insists on the `.weights.h5` suffix, so the temporary name keeps it whole.
    tmp = folder / f"model.tmp-{os.getpid()}.weights.h5"
    try:
        fresh.save_weights(str(tmp))
        os.replace(tmp, folder / WEIGHTS_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    write_json(folder / METADATA_FILE, metadata, sort_keys=False)
    return folder


def read_metadata(folder, *, paper: str) -> dict:
    """The validated metadata of a bundle folder of `paper`.

    Raises:
        ValueError: no metadata.json (not a bundle), invalid JSON, a schema
            violation, or a bundle of another paper; the message names the file.
    """
    folder = Path(folder)
    path = folder / METADATA_FILE
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such bundle folder; expected a folder holding "
                         f"{METADATA_FILE}, {CONFIG_FILE} and {WEIGHTS_FILE}")
    if not path.is_file():
        raise ValueError(f"{path}: not found; {folder} is not a model bundle (expected "
                         f"{METADATA_FILE} beside {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if document.get("paper") != paper:
        raise ValueError(f"{path}: field 'paper' is {document.get('paper')!r}; expected "
                         f"{paper!r} (a bundle of another paper)")
    validate_metadata(document, path)
    return document


def load_bundle_model(folder):
    """The Keras model of a bundle folder (architecture from config.json, then weights).

    Raises:
        ValueError: a missing or unreadable config.json or weights file, named.
    """
    import keras

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{path}: not found; a bundle holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        model = keras.saving.deserialize_keras_object(config)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{config_path}: not a Keras model config ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]})") from None
    try:
        model.load_weights(str(weights_path))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{weights_path}: weights do not fit the model of {config_path} "
                         f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    return model


def load_bundle_array(folder, metadata: dict, name: str):
    """The array `name` a bundle lists under `files` (see `write_bundle`).

    Raises:
        ValueError: not listed, missing or unreadable; the message names the file.
    """
    import numpy as np

    folder = Path(folder)
    listed = (metadata.get("files") or {}).get(name)
    if not isinstance(listed, str) or not listed:
        raise ValueError(f"{folder / METADATA_FILE}: field 'files.{name}': expected the name of "
                         f"the bundle's {name} array")
    path = folder / listed
    if path.name != listed or not path.is_file():
        raise ValueError(f"{path}: not found; {folder / METADATA_FILE} lists it as 'files.{name}'")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]})") from None


def is_bundle(folder) -> bool:
    """Whether `folder` holds a bundle's metadata.json."""
    return (Path(folder) / METADATA_FILE).is_file()


def bundle_folders(run_dir) -> list:
    """The bundle folders of a run folder (`RUN_DIR/bundles/<name>/`), sorted."""
    root = Path(run_dir) / BUNDLES_DIR
    return sorted(p for p in root.glob("*") if is_bundle(p)) if root.is_dir() else []


def resolve_bundle(path, *, name=None) -> Path:
    """The bundle folder meant by `path`: the bundle itself, or a run folder's
    `bundles/<name>` (`name` None: the run's only bundle).

    Raises:
        ValueError: no bundle found, or several and no name; the message lists them.
    """
    path = Path(path)
    if is_bundle(path) or not (path / BUNDLES_DIR).is_dir():
        return path  # read_metadata names what is missing
    found = bundle_folders(path)
    names = [p.name for p in found]
    if name is not None:
        if name not in names:
            raise ValueError(f"{path / BUNDLES_DIR}: no bundle {name!r}; expected one of {names}")
        return path / BUNDLES_DIR / name
    if len(found) == 1:
        return found[0]
    raise ValueError(f"{path / BUNDLES_DIR}: holds {len(found)} bundles {names}; name one "
                     f"(--arm) or give its folder")
