"""Reading TensorBoard event files back with TensorBoard's own reader, for tests.

`EventAccumulator` (tensorboard.backend.event_processing) is what the TensorBoard
server uses, so a log it reads is a log the dashboard shows.
"""

from __future__ import annotations

from pathlib import Path


def event_folders(root) -> list:
    """Every folder under `root` (itself included) that holds an event file, sorted."""
    root = Path(root)
    return sorted({p.parent for p in root.rglob("events.out.tfevents.*")})


def _accumulator(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def scalars(folder) -> dict:
    """Tag -> list of (step, value) of the scalars logged in one folder (tf.summary or v1)."""
    from tensorboard.util import tensor_util

    acc = _accumulator(folder)
    out = {}
    for tag in acc.Tags().get("scalars", []):
        out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    for tag in acc.Tags().get("tensors", []):
        values = [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        if all(v.ndim == 0 and v.dtype.kind in "fiu" for _, v in values):
            out[tag] = [(step, float(v)) for step, v in values]
    return out


def hparams(folder) -> dict | None:
    """The HParams session start info of one folder: name -> value, or None if none."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    acc = _accumulator(folder)
    try:
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:  # no HParams summary in this folder
        return None
    raw = content.get(metadata.SESSION_START_INFO_TAG)
    if raw is None:
        return None
    info = plugin_data_pb2.HParamsPluginData.FromString(raw).session_start_info
    values = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind) if kind else None
    return values
