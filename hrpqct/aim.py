"""Scanco AIM files: a small pure-NumPy reader/writer, and the optional ITK reader.

HR-pQCT scanners (Scanco XtremeCT I/II) store reconstructed scans as AIM files.
Two layouts exist and both are handled here for the subset this package writes
(uncompressed 3D scalar volumes of int8, int16, int32 or float32):

* ``AIMDATA_V020``: a pre-header of five little-endian int32 (pre-header size 20,
  struct header size 140, processing-log size, image-data size, associated-data
  size), a 140-byte image struct header, the processing log (ASCII text), the
  voxel data.
* ``AIMDATA_V030``: a 16-byte magic ``"AIMDATA_V030   \\0"``, the same five
  fields as int64 (pre-header size 40), a 224-byte struct header, the log, the data.

The struct header holds (after a short version block) the data type code
(``0x00020002`` = int16, ``0x00010001`` = int8, ``0x00030004`` = int32,
``0x001a0004`` = float32), 21 integers of which the first six are the position
(x, y, z, in voxels; the origin is position times element size) and the
dimensions (x, y, z), and the element size: in V020 three floats in Scanco's
byte order (word-swapped, scaled by 4), in V030 three int64 in nanometres.
Voxels are stored x fastest, so the array read here is indexed ``[z, y, x]``, as
``itk.imread`` returns it. The processing log is a list of ``key   value``
lines (two or more spaces between them); comment lines start with ``!``.

The layout was worked out from files written by ITK's ``itk-ioscanco`` package
(PyPI, Apache-2.0) and is checked against it in the tests whenever ITK is
installed. Compressed AIM types (binary run-length, packed bits) are not
supported by the pure reader: :func:`read_aim` falls back to ITK for them when
ITK is installed (``pip install medrepro[aim]``), and raises otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import struct
from pathlib import Path

import numpy as np

MAGIC_V030 = b"AIMDATA_V030   \x00"
# Scanco data type codes of the uncompressed scalar types handled here.
AIM_TYPES = {
    0x00010001: np.dtype("<i1"),
    0x00020002: np.dtype("<i2"),
    0x00030004: np.dtype("<i4"),
    0x001A0004: np.dtype("<f4"),
}
_V020_STRUCT_SIZE = 140
_V030_STRUCT_SIZE = 224
# A processing log is a few kilobytes; far more is a broken or forged pre-header.
MAX_LOG_BYTES = 2**26
# The processing log's key of the grey-value scaling, and the name ITK's reader gives it.
MU_SCALING_KEYS = ("Mu_Scaling", "MuScaling")


@dataclasses.dataclass
class AimImage:
    """A volume read from an AIM file.

    Attributes:
        data: np.ndarray [z, y, x]. The voxels in the file's own type.
        spacing: tuple of 3 floats. Element size (x, y, z) in millimetres.
        position: tuple of 3 ints. Offset of the volume (x, y, z) in voxels.
        log: dict str -> str. The processing log's ``key value`` lines.
        version: str. ``"AIMDATA_V020"`` or ``"AIMDATA_V030"``.
        path: str, default "". The file it was read from (named in errors).
    """

    data: np.ndarray
    spacing: tuple
    position: tuple = (0, 0, 0)
    log: dict = dataclasses.field(default_factory=dict)
    version: str = "AIMDATA_V020"
    path: str = ""

    @property
    def mu_scaling(self):
        """The scaling of the grey values (native units per 1/cm), None when the file has none.

        The processing log spells it ``Mu_Scaling``; ITK's reader exposes the same
        value under the metadata key ``MuScaling`` (see `MU_SCALING_KEYS`).

        Raises:
            ValueError: the entry is not a finite positive number; names the file.
        """
        key = next((k for k in MU_SCALING_KEYS if k in self.log), None)
        if key is None:
            return None
        text = str(self.log[key]).strip()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{self.path or 'AIM image'}: field {key!r} must be a finite positive "
                             f"number (grey values per 1/cm). Received: {text!r}")
        return value


def _encode_scanco_float(value: float) -> bytes:
    bits = struct.unpack("<I", struct.pack("<f", 4.0 * float(value)))[0]
    return bytes([(bits >> 16) & 0xFF, (bits >> 24) & 0xFF, bits & 0xFF, (bits >> 8) & 0xFF])


def _decode_scanco_float(raw: bytes) -> float:
    bits = (raw[0] << 16) | (raw[1] << 24) | raw[2] | (raw[3] << 8)
    return 0.25 * struct.unpack("<f", struct.pack("<I", bits))[0]


def _format_log(entries: dict) -> bytes:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%d-%b-%Y %H:%M:%S.000").upper()
    lines = ["! ", "! Processing Log ", "!", "!" + "-" * 79]
    items = {"Created by": "medrepro.hrpqct", "Time": now}
    items.update({str(k): str(v) for k, v in entries.items()})
    for key, value in items.items():
        if "  " in key or "\n" in key or "\n" in value:
            raise ValueError(f"AIM log keys may not hold double spaces or newlines. Received: {key!r}")
        lines.append(f"{key:<46}{value}")
    lines.append("!" + "-" * 79)
    return ("\n".join(lines) + "\n").encode("ascii", errors="replace")


def _parse_log(raw: bytes) -> dict:
    log = {}
    text = raw.split(b"\x00", 1)[0].decode("ascii", errors="replace")
    for line in text.splitlines():
        line = line.rstrip("\r ")
        if not line or line.startswith("!"):
            continue
        key, sep, value = line.partition("  ")
        if sep:
            log[key.strip()] = value.strip()
    return log


def write_aim(path, data, spacing, *, position=(0, 0, 0), log=None, version="v020") -> Path:
    """Writes a 3D volume as an uncompressed AIM file.

    Args:
        path: str or Path. Output file (``.AIM`` by convention).
        data: array [z, y, x] of int8, int16, int32 or float32.
        spacing: float or 3 floats. Element size (x, y, z) in millimetres.
        position: 3 ints, default (0, 0, 0). Volume offset (x, y, z) in voxels.
        log: dict, optional. Extra processing-log entries (e.g. ``Mu_Scaling``).
        version: str, default "v020". ``"v020"`` or ``"v030"``.

    Returns:
        The path written.

    Raises:
        ValueError: for a volume that is not 3D, an unsupported type or version.
    """
    path = Path(path)
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"{path}: AIM volumes are 3D [z, y, x]. Received: shape={data.shape}")
    code = next((c for c, t in AIM_TYPES.items()
                 if (t.kind, t.itemsize) == (data.dtype.kind, data.dtype.itemsize)), None)
    if code is None:
        raise ValueError(f"{path}: AIM type must be one of int8, int16, int32, float32. "
                         f"Received: dtype={data.dtype}")
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    if np.any(spacing <= 0):
        raise ValueError(f"{path}: spacing must be positive. Received: spacing={tuple(spacing)}")
    version = version.lower()
    if version not in ("v020", "v030"):
        raise ValueError(f"{path}: version must be 'v020' or 'v030'. Received: version={version!r}")
    nz, ny, nx = data.shape
    ints = [int(position[0]), int(position[1]), int(position[2]), nx, ny, nz] + [0] * 15
    payload = np.ascontiguousarray(data, dtype=AIM_TYPES[code]).tobytes()
    log_bytes = _format_log(log or {})
    if version == "v020":
        struct_bytes = (struct.pack("<i", 0) + _encode_scanco_float(1.6) + b"\x00" * 12
                        + struct.pack("<I", code) + struct.pack("<21i", *ints)
                        + b"".join(_encode_scanco_float(s) for s in spacing))
        struct_bytes += b"\x00" * (_V020_STRUCT_SIZE - len(struct_bytes))
        head = struct.pack("<5i", 20, _V020_STRUCT_SIZE, len(log_bytes), len(payload), 0)
    else:
        struct_bytes = (b"\x00" * 12 + struct.pack("<I", code) + struct.pack("<21q", *ints)
                        + struct.pack("<3q", *[int(round(s * 1e6)) for s in spacing]))
        struct_bytes += b"\x00" * (_V030_STRUCT_SIZE - len(struct_bytes))
        head = MAGIC_V030 + struct.pack("<5q", 40, _V030_STRUCT_SIZE, len(log_bytes), len(payload), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head + struct_bytes + log_bytes + payload)
    return path


def read_aim_numpy(path) -> AimImage:
    """Reads an uncompressed AIM (V020 or V030) file with NumPy only.

    Args:
        path: str or Path.

    Returns:
        AimImage with data indexed [z, y, x].

    Only the headers are read before the sizes they declare are checked against the
    file and against `shared.inputs.MAX_ARRAY_BYTES`; the voxels are read after.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not an AIM file, a compressed or unsupported data type, a
            volume that is not 3D, a truncated file, or dimensions above the memory
            bound; the message names the file.
    """
    from shared.inputs import check_declared_size

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AIM file not found: {path}")
    file_size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(16 + 40 + _V030_STRUCT_SIZE)  # both layouts' headers, no voxels
    if raw[:16] == MAGIC_V030:
        version, int_fmt, base = "AIMDATA_V030", "<q", 16
        if file_size < base + 40:
            raise ValueError(f"{path}: truncated AIM V030 pre-header")
        pre, struct_size, log_size, data_size, _ = struct.unpack_from("<5q", raw, base)
        if pre != 40 or struct_size != _V030_STRUCT_SIZE:
            raise ValueError(f"{path}: AIM V030 pre-header must hold sizes (40, {_V030_STRUCT_SIZE}). "
                             f"Received: ({pre}, {struct_size})")
        type_offset = 12
    else:
        version, int_fmt, base = "AIMDATA_V020", "<i", 0
        if file_size < 20:
            raise ValueError(f"{path}: not an AIM file (shorter than its pre-header)")
        pre, struct_size, log_size, data_size, _ = struct.unpack_from("<5i", raw, 0)
        if pre != 20 or struct_size != _V020_STRUCT_SIZE:
            raise ValueError(f"{path}: not an AIM file: expected an AIMDATA_V030 magic or a "
                             f"V020 pre-header (20, 140). Received: ({pre}, {struct_size})")
        type_offset = 20
    s0 = base + pre
    if log_size < 0 or data_size < 0:
        raise ValueError(f"{path}: AIM pre-header sizes must be >= 0. Received: log size {log_size}, "
                         f"data size {data_size}")
    if file_size < s0 + struct_size + log_size:
        raise ValueError(f"{path}: truncated AIM header: the pre-header announces a {log_size}-byte "
                         f"log after {s0 + struct_size} header bytes, the file holds {file_size} bytes")
    code = struct.unpack_from("<I", raw, s0 + type_offset)[0]
    step = struct.calcsize(int_fmt)
    ints = struct.unpack_from("<21" + int_fmt[1], raw, s0 + type_offset + 4)
    after_ints = s0 + type_offset + 4 + 21 * step
    if version == "AIMDATA_V020":
        spacing = tuple(_decode_scanco_float(raw[after_ints + 4 * i: after_ints + 4 * i + 4])
                        for i in range(3))
    else:
        spacing = tuple(v * 1e-6 for v in struct.unpack_from("<3q", raw, after_ints))
    if code not in AIM_TYPES:
        raise ValueError(f"{path}: unsupported or compressed AIM data type 0x{code:08x}; "
                         f"expected one of {[hex(c) for c in AIM_TYPES]} (int8, int16, int32, "
                         "float32). Install itk-ioscanco (pip install medrepro[aim]) to read "
                         "compressed AIM files.")
    position = tuple(int(v) for v in ints[:3])
    nx, ny, nz = (int(v) for v in ints[3:6])
    if min(nx, ny, nz) < 1:
        raise ValueError(f"{path}: AIM dimensions must be positive. Received: (x, y, z)="
                         f"({nx}, {ny}, {nz})")
    dtype = AIM_TYPES[code]
    expected = nx * ny * nz * dtype.itemsize
    if data_size != expected:
        raise ValueError(f"{path}: AIM pre-header data size {data_size} bytes does not match the "
                         f"dimensions {nx}x{ny}x{nz} of {dtype} ({expected} bytes)")
    d0 = s0 + struct_size + log_size
    if file_size < d0 + expected:
        raise ValueError(f"{path}: truncated AIM data: expected {expected} bytes for "
                         f"{nx}x{ny}x{nz} {dtype}, found {max(file_size - d0, 0)}")
    check_declared_size(path, (nz, ny, nx), dtype, field="dimensions", working_itemsize=4)
    check_declared_size(path, (log_size,), np.uint8, field="log size", max_bytes=MAX_LOG_BYTES)
    with open(path, "rb") as handle:
        handle.seek(s0 + struct_size)
        log_raw = handle.read(log_size)
        data = np.fromfile(handle, dtype=dtype, count=nx * ny * nz).reshape(nz, ny, nx)
    log = _parse_log(log_raw)
    spacing = tuple(s if s != 0 else 1.0 for s in spacing)
    return AimImage(data=data.astype(dtype.newbyteorder("="), copy=True), spacing=spacing,
                    position=position, log=log, version=version, path=str(path))


def itk_available() -> bool:
    """Whether ITK with the Scanco reader (``itk-ioscanco``) can be imported."""
    try:
        import itk  # noqa: F401

        return hasattr(itk, "ScancoImageIO")
    except ImportError:
        return False


def read_aim_itk(path) -> AimImage:
    """Reads an AIM file through ITK's ``itk-ioscanco`` (any type it supports).

    Args:
        path: str or Path.

    Returns:
        AimImage; ``log`` holds ITK's metadata values as strings.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AIM file not found: {path}")
    import itk

    try:
        image = itk.imread(str(path))
    except RuntimeError as err:
        raise ValueError(f"{path}: ITK could not read the AIM file: {' '.join(str(err).split())[:200]}") from err
    data = np.asarray(itk.array_from_image(image))
    spacing = tuple(float(s) for s in image.GetSpacing())
    origin = tuple(float(o) for o in image.GetOrigin())
    position = tuple(int(round(o / s)) for o, s in zip(origin, spacing))
    meta = image.GetMetaDataDictionary()
    log = {}
    for key in meta.GetKeys():
        try:
            log[str(key)] = str(meta[key])
        except Exception:  # noqa: BLE001 - some ITK metadata types do not convert
            continue
    version = log.get("Version", "").strip() or "AIMDATA_V020"
    return AimImage(data=data, spacing=spacing, position=position, log=log, version=version, path=str(path))


def read_aim(path, *, backend="auto") -> AimImage:
    """Reads an AIM file.

    Args:
        path: str or Path.
        backend: str, default "auto". ``"numpy"`` (the built-in reader),
            ``"itk"`` (itk-ioscanco) or ``"auto"``: NumPy, and ITK for the
            compressed types the built-in reader does not handle when installed.

    Returns:
        AimImage with data [z, y, x].

    Raises:
        FileNotFoundError, ValueError: naming the file.
    """
    if backend == "numpy":
        return read_aim_numpy(path)
    if backend == "itk":
        if not itk_available():
            raise ValueError("backend='itk' needs itk-ioscanco: pip install medrepro[aim]")
        return read_aim_itk(path)
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'numpy' or 'itk'. Received: {backend!r}")
    try:
        return read_aim_numpy(path)
    except ValueError as err:
        if "unsupported or compressed" in str(err) and itk_available():
            return read_aim_itk(path)
        raise
