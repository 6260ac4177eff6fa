"""TensorBoard logs of a run folder: per-epoch scalars, search HParams, study HParams.

Everything a run logs lies under `RUN_DIR/tensorboard/`, one folder per arm, tuner
search or trial, so `tensorboard --logdir RUN_DIR/tensorboard` (or `medrepro
tensorboard RUN_DIR`, or `%tensorboard --logdir RUN_DIR/tensorboard` in a notebook)
shows every run of the folder side by side:

* `tensorboard_callback(run_dir, name)` is a plain `keras.callbacks.TensorBoard`
  writing loss, metrics and the learning rate once per epoch under
  `tensorboard/<name>/`. Among a Keras Tuner search's callbacks it is found by Keras
  Tuner itself, which moves each trial to `tensorboard/<name>/<trial id>/execution0/`
  and logs the trial's hyperparameters as TensorBoard HParams (keras-tuner #418).
* `write_study_hparams(run_dir, outcomes)` logs a study's endpoints per arm and unit
  (seed, fold, trial index) as HParams sessions under `tensorboard/study/`, so the
  HParams dashboard tabulates and plots arm x unit; `shared.study.Study.finish` calls it.

Only what those do not cover is written by hand here (the study's per-unit results).
"""

from __future__ import annotations

import re
from pathlib import Path

TENSORBOARD_DIR = "tensorboard"
STUDY_DIR = "study"
_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_name(name) -> str:
    """`name` as one folder name: characters other than letters, digits, `._=-` become `_`."""
    text = _SAFE.sub("_", str(name)).strip("._")
    if not text:
        raise ValueError(f"a TensorBoard run name needs a letter or digit. Received: name={name!r}")
    return text


def tensorboard_dir(run_dir, name=None) -> Path:
    """`RUN_DIR/tensorboard` or, with `name`, `RUN_DIR/tensorboard/<name>`."""
    root = Path(run_dir) / TENSORBOARD_DIR
    return root if name is None else root / safe_name(name)


def tensorboard_callback(run_dir, name):
    """A TensorBoard callback logging per-epoch scalars under `RUN_DIR/tensorboard/<name>`.

    Put it last among a `fit`'s callbacks, so the metrics other callbacks add to the
    epoch's logs (a validation callback's scores) are logged too. No graph, weight
    histograms or profile are written: they cost more than the scalars and the
    scalars are what compares runs.

    Args:
        run_dir: str or Path. The run folder.
        name: str. The arm, net or search ("cce", "siamese", "bar_recon_unit0").

    Returns:
        keras.callbacks.TensorBoard (its class name is what Keras Tuner looks for).

    Example:
        >>> model.fit(x, y, epochs=5, callbacks=[tensorboard_callback(out, "siamese")])
    """
    import keras

    return keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir(run_dir, name)),
                                       write_graph=False, histogram_freq=0, profile_batch=0,
                                       update_freq="epoch")


def _hparam_value(value):
    """An HParams value: bool, int or float as they are, anything else as str."""
    if isinstance(value, (bool, int, float, str)):
        return value
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def write_hparams_session(logdir, hparams: dict, metrics: dict, *, session_id=None) -> Path:
    """One TensorBoard HParams session: its hyperparameters and metric values (step 0).

    Args:
        logdir: str or Path. The session's own folder.
        hparams: dict name -> value (bool, number or str; other values as str).
        metrics: dict tag -> finite number, written as scalars at step 0.
        session_id: str, optional. Defaults to the folder name.

    Returns:
        Path of `logdir`.
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    logdir = Path(logdir)
    writer = tf.summary.create_file_writer(str(logdir))
    try:
        with writer.as_default():
            hparams_api.hparams({str(k): _hparam_value(v) for k, v in hparams.items()},
                                trial_id=session_id or logdir.name)
            for tag, value in metrics.items():
                tf.summary.scalar(str(tag), float(value), step=0)
        writer.flush()
    finally:
        writer.close()
    return logdir


def write_study_hparams(run_dir, outcomes: dict) -> list:
    """Logs a study's outcomes as HParams sessions, one per arm and unit.

    Args:
        run_dir: str or Path. The run folder.
        outcomes: dict arm -> endpoint -> unit -> value (`Study.outcomes`).

    Returns:
        list of the session folders written (`tensorboard/study/<arm>/unit_<unit>`).
    """
    sessions = {}
    for arm, endpoints in outcomes.items():
        for endpoint, by_unit in endpoints.items():
            for unit, value in by_unit.items():
                sessions.setdefault((arm, unit), {})[endpoint] = value
    written = []
    for (arm, unit), metrics in sessions.items():
        logdir = tensorboard_dir(run_dir, STUDY_DIR) / safe_name(arm) / f"unit_{safe_name(unit)}"
        written.append(write_hparams_session(logdir, {"arm": str(arm), "unit": _hparam_value(unit)},
                                             metrics, session_id=f"{arm}/{unit}"))
    return written


def tensorboard_command(run_dir) -> list:
    """The command that opens a run folder's logs: `tensorboard --logdir RUN_DIR/tensorboard`.

    Raises:
        ValueError: `run_dir` is not a folder, or holds no `tensorboard/` logs.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run folder")
    logdir = run_dir / TENSORBOARD_DIR
    if logdir.is_dir():
        return ["tensorboard", "--logdir", str(logdir)]
    if any(run_dir.glob(f"*/{TENSORBOARD_DIR}")) or any(run_dir.glob(f"*/*/{TENSORBOARD_DIR}")):
        return ["tensorboard", "--logdir", str(run_dir)]  # a demo folder: every paper's runs
    raise ValueError(f"{logdir}: no TensorBoard logs; expected the folder of a run that trained "
                     f"(its logs are written under tensorboard/)")
