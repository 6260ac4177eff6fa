"""TFRecord shards for data that does not fit in memory.

:func:`write_shards` stores arrays (or tuples / dicts of arrays) and their
labels, of any dtype and shape, as ``N`` TFRecord files plus a JSON manifest
(:class:`ShardWriter` does the same chunk by chunk, for data that is read
piece by piece and never held in memory at once);
:func:`dataset_from_shards` reads them back as a batched ``tf.data`` pipeline:

    shuffle shard files -> parallel interleave (cycle_length files at a time)
    -> shuffle records (seeded buffer) -> batch -> parse the whole batch
    -> augment the batch -> prefetch

Records are shuffled while still serialised and parsed a batch at a time
(``tf.io.parse_example`` and ``tf.io.decode_raw`` on the whole batch), so the
shuffle buffer holds bytes and parsing is vectorised. Augmentation follows the
``augment(x_batch, y_batch, seed)`` contract of
:func:`shared.pipeline.dataset_from_arrays`, with the same per-batch seeds.

Layout on disk (``prefix="shard"``, 4 shards)::

    shard-00000-of-00004.tfrecord ... shard-00003-of-00004.tfrecord
    shard.shards.json    # structure, dtype and shape of every field, and the
                         # record count and byte size of every shard file

Sample ``i`` goes to shard ``i % num_shards`` (round robin), so a dataset
sorted by class still gives shards that each hold every class, and the files
are byte-for-byte the same for the same input.

Each record carries a fingerprint of the manifest's field specification, and
every shard is checked for its record count as it is read. A shard that is
missing, of the wrong size, corrupt (a failed record checksum), truncated, or
written with another field specification raises an error naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from shared.data.pipeline import (
    AUTOTUNE,
    _check_arrays,
    _finish,
    _leaves,
    _to_arrays,
    _validate_batch_size,
    _validate_seed,
)

logger = logging.getLogger(__name__)

__all__ = ["ShardWriter", "write_shards", "load_manifest", "dataset_from_shards"]

FORMAT = "medrepro-shards/1"
MANIFEST_SUFFIX = ".shards.json"
_SPEC_KEY = "__spec__"
# decode_raw reads these as a signed type of the same width, then bitcasts.
_BITCAST = {"uint32": "int32", "uint64": "int64"}
_COMPRESSION = (None, "GZIP", "ZLIB")


# ----------------------------------------------------------------------------
# field specification


def _skeleton(structure, name: str):
    """JSON description of a (nested) structure; leaves become their field names.

    Mirrors the traversal of :func:`shared.pipeline._leaves` on a structure
    already passed through :func:`shared.pipeline._to_arrays` (dicts, tuples,
    arrays), so field names match the names in its error messages.
    """
    if isinstance(structure, dict):
        items = []
        for key in structure:
            if not isinstance(key, str):
                raise ValueError(
                    f"Dictionary keys of {name} must be strings to be stored in shards. "
                    f"Received: key {key!r}"
                )
            items.append([key, _skeleton(structure[key], f"{name}[{key!r}]")])
        return {"dict": items}
    if isinstance(structure, tuple):
        return {"tuple": [_skeleton(item, f"{name}[{i}]") for i, item in enumerate(structure)]}
    return name


def _rebuild(skeleton, values: dict):
    """Inverse of :func:`_skeleton`: fills the structure with ``values[name]``."""
    if isinstance(skeleton, dict) and "dict" in skeleton:
        return {key: _rebuild(sub, values) for key, sub in skeleton["dict"]}
    if isinstance(skeleton, dict) and "tuple" in skeleton:
        return tuple(_rebuild(sub, values) for sub in skeleton["tuple"])
    return values[skeleton]


def _element(structure: dict, values: dict):
    """One sample (or batch): ``x``, or ``(x, y)`` when labels were stored."""
    x = _rebuild(structure["x"], values)
    return x if "y" not in structure else (x, _rebuild(structure["y"], values))


def _field_dtype(name: str, arr: np.ndarray) -> str:
    """TensorFlow dtype name stored for a field (text becomes ``string``)."""
    if arr.dtype.kind in "USO":
        if arr.dtype.kind == "O" and not all(isinstance(v, (str, bytes)) for v in arr.flat):
            raise ValueError(
                f"{name} has dtype object; only arrays of str / bytes objects can be stored. "
                f"Received: first element of type {type(next(iter(arr.flat))).__name__}"
            )
        return "string"
    try:
        return tf.as_dtype(arr.dtype).name
    except TypeError as exc:
        raise ValueError(f"{name} has dtype {arr.dtype}, which TensorFlow cannot hold.") from exc


def _fingerprint(fields: list[dict]) -> int:
    text = json.dumps([[f["name"], f["dtype"], f["shape"]] for f in fields])
    return zlib.crc32(text.encode())


def _encode(value: np.ndarray, dtype: str) -> bytes:
    """Bytes of one sample of one field (little-endian raw, or a TensorProto for text)."""
    if dtype == "string":
        flat = [v.encode() if isinstance(v, str) else bytes(v) for v in value.flat]
        return tf.io.serialize_tensor(tf.constant(flat, tf.string, shape=value.shape)).numpy()
    return np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()


def _shard_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}.tfrecord"


# ----------------------------------------------------------------------------
# writer


class ShardWriter:
    """Writes samples to TFRecord shards chunk by chunk, for data larger than memory.

    Open it with the shard count, call :meth:`write` with successive chunks
    of samples (arrays ``[k, ...]``, or tuples / dicts of them, and their
    labels), and :meth:`close` it (or use it as a context manager). Sample
    ``i`` of the whole stream goes to shard ``i % num_shards``, so the files
    do not depend on how the samples were split into chunks. Files are
    written under temporary names and renamed on :meth:`close`, which writes
    the manifest last; leaving the ``with`` block on an exception removes
    them and writes no manifest.

    Args:
        directory: str or path. Created if missing.
        num_shards: int >= 1. Number of files; at most the number of samples.
        prefix: str, default "shard". File name prefix.
        compression: None (default), "GZIP" or "ZLIB".
        overwrite: bool, default False. Replace an existing manifest of the
            same prefix.

    Raises:
        ValueError: bad ``num_shards`` / ``compression`` / ``prefix``.
        FileExistsError: the manifest exists and ``overwrite`` is False.

    Example:
        >>> with ShardWriter("data/train", num_shards=64) as writer:
        ...     for volumes, labels in load_in_chunks():
        ...         writer.write(volumes, labels)
        >>> ds = dataset_from_shards("data/train", batch_size=4, seed=0)
    """

    def __init__(self, directory, *, num_shards: int, prefix: str = "shard",
                 compression: str | None = None, overwrite: bool = False):
        if num_shards is None or int(num_shards) != num_shards or num_shards < 1:
            raise ValueError(f"num_shards must be a positive integer. Received: num_shards={num_shards}")
        if compression not in _COMPRESSION:
            raise ValueError(
                f"compression must be one of {_COMPRESSION}. Received: compression={compression!r}"
            )
        if not prefix or os.sep in prefix:
            raise ValueError(f"prefix must be a non-empty file name part. Received: prefix={prefix!r}")
        self.num_shards = int(num_shards)
        self.compression = compression
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.directory / f"{prefix}{MANIFEST_SUFFIX}"
        if self.manifest_path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.manifest_path} already exists; pass overwrite=True to replace it, "
                f"or use another prefix."
            )
        self.paths = [self.directory / _shard_name(prefix, s, self.num_shards)
                      for s in range(self.num_shards)]
        options = tf.io.TFRecordOptions(compression_type=compression or "")
        self._writers = [tf.io.TFRecordWriter(str(self._tmp(p)), options) for p in self.paths]
        self._counts = [0] * self.num_shards
        self._skeleton = self._fields = self._fingerprint = None
        self.num_samples = 0

    @staticmethod
    def _tmp(path: Path) -> Path:
        return path.with_name(path.name + ".tmp")

    def write(self, x, y=None) -> None:
        """Appends a chunk of samples.

        Args:
            x: array ``[k, ...]`` or tuple / dict of such arrays, any dtype
                (numeric, bool, str / bytes).
            y: optional labels / targets, ``k`` along axis 0. Every chunk
                has the structure, dtypes and per-sample shapes of the first.

        Raises:
            ValueError: as :func:`shared.pipeline.dataset_from_arrays` (empty,
                mismatched lengths, NaN, scalars; the message gives the
                chunk's first sample and the index within the chunk),
                non-string dict keys, an unsupported dtype, or a chunk whose
                fields differ from the first chunk's (named).
        """
        if self._writers is None:
            raise ValueError(f"The writer of {self.manifest_path} is closed.")
        x = _to_arrays(x)
        y = None if y is None else _to_arrays(y)
        try:
            k = _check_arrays(x, y)
        except ValueError as exc:
            raise ValueError(f"Chunk starting at sample {self.num_samples}: {exc}") from exc
        skeleton = {"x": _skeleton(x, "x")}
        leaves = _leaves(x, "x")
        if y is not None:
            skeleton["y"] = _skeleton(y, "y")
            leaves += _leaves(y, "y")
        fields = [{"name": key, "dtype": _field_dtype(key, arr), "shape": list(arr.shape[1:])}
                  for key, arr in leaves]
        if self._fields is None:
            self._skeleton, self._fields = skeleton, fields
            self._fingerprint = _fingerprint(fields)
        elif (skeleton, fields) != (self._skeleton, self._fields):
            first = {f["name"]: f for f in self._fields}
            diff = [f"{f['name']}: {f['dtype']} {f['shape']} (first chunk: "
                    f"{first[f['name']]['dtype']} {first[f['name']]['shape']})"
                    for f in fields if f["name"] in first and f != first[f["name"]]]
            raise ValueError(
                f"Chunk starting at sample {self.num_samples} does not match the fields of the "
                f"first chunk written to {self.manifest_path}: "
                f"{diff or f'structure {skeleton} instead of {self._skeleton}'}"
            )
        spec = tf.train.Feature(int64_list=tf.train.Int64List(value=[self._fingerprint]))
        for j in range(k):
            feature = {_SPEC_KEY: spec}
            for (key, arr), field in zip(leaves, fields):
                feature[key] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[_encode(arr[j], field["dtype"])]))
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            shard = self.num_samples % self.num_shards
            self._writers[shard].write(example.SerializeToString(deterministic=True))
            self._counts[shard] += 1
            self.num_samples += 1

    def _discard(self) -> None:
        for writer in self._writers or []:
            writer.close()
        for path in self.paths:
            self._tmp(path).unlink(missing_ok=True)
        self._writers = None

    def close(self) -> Path:
        """Renames the shards into place and writes the manifest.

        Returns:
            ``Path`` of the manifest, ``<directory>/<prefix>.shards.json``.

        Raises:
            ValueError: nothing was written, or fewer samples than shards
                (the temporary files are removed).
        """
        if self._writers is None:
            return self.manifest_path
        if self.num_samples < self.num_shards:
            self._discard()
            raise ValueError(
                f"num_shards must be between 1 and the number of samples ({self.num_samples}). "
                f"Received: num_shards={self.num_shards}"
            )
        for writer in self._writers:
            writer.close()
        self._writers = None
        shards = []
        for path, count in zip(self.paths, self._counts):
            os.replace(self._tmp(path), path)
            shards.append({"file": path.name, "records": count, "bytes": path.stat().st_size})
        manifest = {
            "format": FORMAT,
            "num_samples": self.num_samples,
            "compression": self.compression,
            "fingerprint": self._fingerprint,
            "structure": self._skeleton,
            "fields": self._fields,
            "shards": shards,
        }
        tmp = self._tmp(self.manifest_path)
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, self.manifest_path)
        logger.info("Wrote %d samples to %d shards under %s", self.num_samples, self.num_shards,
                    self.directory)
        return self.manifest_path

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()


def write_shards(
    directory,
    x,
    y=None,
    *,
    num_shards: int,
    prefix: str = "shard",
    compression: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes in-memory samples to ``num_shards`` TFRecord files and a manifest.

    Every field (each array of ``x`` and ``y``) is stored per sample as raw
    little-endian bytes (text as a serialised string tensor), with its dtype
    and per-sample shape in the manifest. Sample ``i`` goes to shard
    ``i % num_shards``, in order, so the same input always gives the same
    files. For data larger than memory, write it chunk by chunk with
    :class:`ShardWriter` (this function is one :meth:`ShardWriter.write`).

    Args:
        directory: str or path. Created if missing.
        x: array ``[N, ...]`` or tuple / dict of such arrays, any dtype
            (numeric, bool, str / bytes).
        y: optional labels / targets (array, tuple or dict), ``N`` along axis 0.
        num_shards: int, 1 <= num_shards <= N. Number of files.
        prefix: str, default "shard". File name prefix.
        compression: None (default), "GZIP" or "ZLIB".
        overwrite: bool, default False. Replace an existing manifest of the
            same prefix (its shard files are overwritten or left in place).

    Returns:
        ``Path`` of the manifest, ``<directory>/<prefix>.shards.json``.

    Raises:
        ValueError: as :func:`shared.pipeline.dataset_from_arrays` for the
            arrays (empty, mismatched lengths, NaN, scalars), a bad
            ``num_shards`` / ``compression``, non-string dict keys, or an
            unsupported dtype.
        FileExistsError: the manifest exists and ``overwrite`` is False.

    Example:
        >>> manifest = write_shards("data/train", images, labels, num_shards=16)
        >>> ds = dataset_from_shards(manifest, batch_size=32, seed=1)
    """
    x = _to_arrays(x)
    y = None if y is None else _to_arrays(y)
    n = _check_arrays(x, y)
    if num_shards is None or int(num_shards) != num_shards or not 1 <= num_shards <= n:
        raise ValueError(
            f"num_shards must be an integer between 1 and the number of samples ({n}). "
            f"Received: num_shards={num_shards}"
        )
    with ShardWriter(directory, num_shards=num_shards, prefix=prefix, compression=compression,
                     overwrite=overwrite) as writer:
        writer.write(x, y)
    return writer.manifest_path


# ----------------------------------------------------------------------------
# manifest


def load_manifest(source) -> dict:
    """Reads and checks a shard manifest.

    Args:
        source: path of a ``*.shards.json`` manifest, or a directory holding
            exactly one.

    Returns:
        The manifest as a dict, with ``"paths"`` added: the absolute shard
        file paths, in shard order.

    Raises:
        FileNotFoundError: no manifest, or a shard file it lists is missing
            (every missing file is named).
        PermissionError: a shard file that cannot be read (named).
        ValueError: several manifests in the directory, an unreadable or
            foreign manifest, or a shard file whose size differs from the
            one recorded (truncated or rewritten; the file is named).
    """
    source = Path(source)
    if source.is_dir():
        found = sorted(source.glob(f"*{MANIFEST_SUFFIX}"))
        if not found:
            raise FileNotFoundError(f"No shard manifest (*{MANIFEST_SUFFIX}) in directory {source}")
        if len(found) > 1:
            raise ValueError(
                f"Directory {source} holds {len(found)} shard manifests "
                f"({[p.name for p in found]}); pass the one to read."
            )
        source = found[0]
    if not source.exists():
        raise FileNotFoundError(f"Shard manifest not found: {source}")
    try:
        manifest = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"Shard manifest {source} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(
            f"{source} is not a shard manifest: expected format {FORMAT!r}, "
            f"found {manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__!r}."
        )
    if _fingerprint(manifest["fields"]) != manifest["fingerprint"]:
        raise ValueError(f"Shard manifest {source}: the field list does not match its fingerprint.")
    paths = [source.parent.resolve() / shard["file"] for shard in manifest["shards"]]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} shard file(s) listed in {source} are missing: {missing}"
        )
    unreadable = [str(p) for p in paths if not os.access(p, os.R_OK)]
    if unreadable:
        raise PermissionError(f"Shard file(s) listed in {source} cannot be read: {unreadable}")
    for path, shard in zip(paths, manifest["shards"]):
        size = path.stat().st_size
        if size != shard["bytes"]:
            raise ValueError(
                f"Shard file {path} has {size} bytes; the manifest {source} records "
                f"{shard['bytes']}: the file is truncated or was rewritten."
            )
    manifest["paths"] = [str(p) for p in paths]
    manifest["manifest"] = str(source)
    return manifest


def _check_element_spec(manifest: dict, element_spec) -> None:
    """Compares the caller's expected per-sample specs with the manifest's fields."""
    fields = {f["name"]: f for f in manifest["fields"]}
    structure = manifest["structure"]
    stored = {key: tf.TensorSpec(f["shape"], tf.as_dtype(f["dtype"])) for key, f in fields.items()}
    stored = _element(structure, stored)
    try:
        tf.nest.assert_same_structure(element_spec, stored)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"element_spec does not match the structure stored in {manifest['manifest']}. "
            f"Expected (element_spec): {element_spec!r}; stored: {stored!r}"
        ) from exc
    names = tf.nest.flatten(_element(structure, {key: key for key in fields}))
    for key, want, have in zip(names, tf.nest.flatten(element_spec),
                               tf.nest.flatten(stored)):
        if want.dtype != have.dtype or not want.shape.is_compatible_with(have.shape):
            raise ValueError(
                f"Field {key} in {manifest['manifest']}: expected {want.dtype.name} "
                f"{want.shape}, the shards hold {have.dtype.name} {have.shape}."
            )


# ----------------------------------------------------------------------------
# reader


def _read_shard(path, records, compression: str):
    """Records of one shard as ``(record, path)``, exactly ``records`` of them.

    TensorFlow's error for a failed checksum or a truncated record does not
    name the file. ``ignore_errors`` ends the file's stream there instead, and
    the stream is padded with empty records up to the count the manifest
    lists; the parser rejects empty records and names the file. Every stage
    here is a native dataset op (no function runs per record).
    """
    ds = tf.data.TFRecordDataset(path, compression_type=compression).ignore_errors()
    ds = ds.concatenate(tf.data.Dataset.from_tensors(tf.constant(b"")).repeat())
    ds = tf.data.Dataset.zip((tf.data.Dataset.range(records), ds))
    return ds.map(lambda index, record: (record, path))


def _parser(manifest: dict) -> Callable:
    """``(records [B], paths [B]) -> x`` or ``(x, y)``: parses and decodes a batch."""
    fields = manifest["fields"]
    fingerprint = int(manifest["fingerprint"])
    features = {_SPEC_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    for field in fields:
        features[field["name"]] = tf.io.FixedLenFeature([], tf.string, default_value="")

    def decode(raw, field, batch):
        dtype, shape = field["dtype"], field["shape"]
        if dtype == "string":
            return tf.map_fn(lambda s: tf.ensure_shape(tf.io.parse_tensor(s, tf.string), shape), raw,
                             fn_output_signature=tf.TensorSpec(shape, tf.string))
        read = _BITCAST.get(dtype, dtype)
        values = tf.io.decode_raw(raw, tf.as_dtype(read))
        values = tf.reshape(values, tf.concat([[batch], tf.constant(shape, tf.int32)], 0))
        if read != dtype:
            values = tf.bitcast(values, tf.as_dtype(dtype))
        return tf.ensure_shape(values, [None] + shape)

    def parse(records, paths):
        missing = tf.equal(tf.strings.length(records), 0)
        short = tf.debugging.Assert(tf.logical_not(tf.reduce_any(missing)), [
            "Shard file", tf.boolean_mask(paths, missing)[:1],
            "gave fewer records than its manifest", manifest["manifest"],
            "lists: the file is corrupt (a record failed its checksum) or truncated",
        ])
        with tf.control_dependencies([short]):
            parsed = tf.io.parse_example(records, features)
        bad = tf.not_equal(parsed[_SPEC_KEY], fingerprint)
        check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [
            "Shard file", tf.boolean_mask(paths, bad)[:1],
            "holds records written with another field specification (fingerprint",
            tf.boolean_mask(parsed[_SPEC_KEY], bad)[:1], "where the manifest",
            manifest["manifest"], "expects", fingerprint, "); write the shards again",
        ])
        batch = tf.shape(records)[0]
        with tf.control_dependencies([check]):
            values = {f["name"]: decode(parsed[f["name"]], f, batch) for f in fields}
        return _element(manifest["structure"], values)

    return parse


def dataset_from_shards(
    source,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    shuffle_buffer: int = 1024,
    augment: Callable | None = None,
    cycle_length: int = 4,
    block_length: int = 1,
    deterministic: bool = True,
    cache: bool | str = False,
    repeat: bool = False,
    drop_remainder: bool = False,
    element_spec=None,
) -> tf.data.Dataset:
    """A batched, shuffled, optionally augmented dataset over TFRecord shards.

    Stages: shuffle the shard files (seeded, every pass) -> read
    ``cycle_length`` files at a time with a parallel ``interleave`` (each
    file checked for its record count) -> optional ``cache`` of the raw
    records -> shuffle records in a ``shuffle_buffer`` -> repeat -> batch ->
    parse and decode the batch -> augment the batch -> prefetch.

    Every sample is read exactly once per pass. With ``deterministic=True``
    (the default) the order depends only on ``seed`` (and TensorFlow's global
    seed, see :mod:`shared.data.pipeline`), ``cycle_length`` and ``block_length``;
    ``deterministic=False`` lets the interleave hand out whichever record is
    ready first: faster when files arrive unevenly (network storage), but the
    order is no longer reproducible.

    Args:
        source: manifest path (from :func:`write_shards`) or its directory.
        batch_size: int. Samples per batch.
        shuffle: bool, default True. Shuffle file order and records, reshuffled
            every pass.
        seed: int, default 0. Seed of the shuffles and of the augmentation
            seeds.
        shuffle_buffer: int, default 1024. Records held for shuffling; memory is
            about ``shuffle_buffer`` times the record size. Use the number of
            samples for a full shuffle when that fits.
        augment: optional ``augment(x_batch, y_batch, seed) -> (x, y)``, as in
            :func:`shared.pipeline.dataset_from_arrays`.
        cycle_length: int, default 4 (at most the number of shards). Files read
            concurrently.
        block_length: int, default 1. Consecutive records taken from one file.
        deterministic: bool, default True. Keep the interleave and parse order
            reproducible.
        cache: False (default), True (raw records in memory after the first
            pass) or a file path prefix (a cache on local disk, e.g. when the
            shards sit on network storage). The cache holds records before
            shuffling and augmentation, so every pass is still reshuffled and
            augmented afresh.
        repeat: bool, default False. Repeat endlessly, reshuffling every pass;
            batches then run across pass boundaries.
        drop_remainder: bool, default False. Drop the last incomplete batch.
        element_spec: optional ``tf.TensorSpec`` structure of one sample
            (``x`` or ``(x, y)``) the caller expects; checked against the
            manifest before anything is read.

    Returns:
        ``tf.data.Dataset`` yielding ``x_batch`` or ``(x_batch, y_batch)`` in
        the stored structure (arrays, tuples, dicts) and dtypes.

    Raises:
        FileNotFoundError: no manifest, or missing shard files (named).
        ValueError: bad arguments, a shard of the wrong size (named), or an
            ``element_spec`` that differs from the stored fields (the field is
            named).
        tf.errors.InvalidArgumentError: while iterating, a corrupt or
            truncated shard, or one written with another field specification;
            the message names the file.

    Example:
        >>> manifest = write_shards("data/train", images, labels, num_shards=16)
        >>> aug = Augment2D(flip=0.5).pipeline_fn()
        >>> ds = dataset_from_shards(manifest, batch_size=32, seed=1, augment=aug)
    """
    batch_size = _validate_batch_size(batch_size)
    seed = _validate_seed(seed)
    for name, value in (("shuffle_buffer", shuffle_buffer), ("cycle_length", cycle_length),
                        ("block_length", block_length)):
        if value is None or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value}")
    manifest = load_manifest(source)
    if element_spec is not None:
        _check_element_spec(manifest, element_spec)
    num_shards = len(manifest["paths"])
    counts = [int(s["records"]) for s in manifest["shards"]]
    compression = manifest["compression"] or ""

    files = tf.data.Dataset.from_tensor_slices(
        (tf.constant(manifest["paths"]), tf.constant(counts, tf.int64)))
    if shuffle:
        files = files.shuffle(num_shards, seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(
        lambda path, n: _read_shard(path, n, compression),
        cycle_length=min(int(cycle_length), num_shards),
        block_length=int(block_length),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if cache is True:
        records = records.cache()
    elif cache:
        records = records.cache(os.fspath(cache))
    if shuffle:
        buffer = min(int(shuffle_buffer), manifest["num_samples"])
        records = records.shuffle(buffer, seed=seed + 1, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    ds = records.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(_parser(manifest), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if not repeat:
        n = manifest["num_samples"]
        steps = n // batch_size if drop_remainder else -(-n // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return _finish(ds, augment, "y" in manifest["structure"], seed)
