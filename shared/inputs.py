"""Checked reading of the papers' input files: sizes before allocation, tables, paths.

The papers' loaders read files a person hands them (a download, a colleague's export,
a file that came through e-mail). What a file's header declares is checked against the
file before any array of that size is allocated, so a header declaring 30000^3 voxels
in a 300-byte file is refused in one line instead of ending in a `MemoryError`:

* `check_declared_size`: a declared shape and type against the bytes the file holds
  (compressed: at most `MAX_DEFLATE_RATIO` times them) and against `MAX_ARRAY_BYTES`;
* `load_nifti_header`: a NIfTI header (nibabel loads lazily) checked for its size, and
  for complex or RGB voxels, which have no single grey value;
* `check_npz`: every array header of a `.npz` archive against the bytes stored for it;
* `check_image_header`: the width and height a PNG or JPEG declares, before decoding;
* `check_spacing`, `check_affine`: finite voxel sizes within `SPACING_RANGE_MM`;
* `read_table`: a CSV table as UTF-8, refusing repeated column names and rows with
  more fields than the header (messages name the file and the line);
* `resolve_inside`: a file name read from a data file, kept inside its folder.

Every check raises `ValueError` (`FileNotFoundError` for a missing file) with a message
naming the file, the field and what was expected.
"""

from __future__ import annotations

import csv
import io
import math
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

# One array a loader may allocate: far above any scan of these papers (an ADNI T1 at 1 mm
# is 30 MB as float32, a COVIDx film 100 MB at most), far below a machine's memory.
MAX_ARRAY_BYTES = 4 * 2**30
# zlib's deflate cannot compress better than about 1032:1.
MAX_DEFLATE_RATIO = 1100
# The largest image (width x height) a 2D loader decodes: a 10,000 x 10,000 film.
MAX_IMAGE_PIXELS = 100_000_000
# Voxel and pixel sizes outside this range (millimetres) are a broken header, not a scan.
SPACING_RANGE_MM = (0.05, 20.0)


def human_bytes(n) -> str:
    """`n` bytes as a short text (`"54.0 TB"`)."""
    n = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def check_declared_size(path, shape, dtype, *, field, stored_bytes=None, compressed=False,
                        working_itemsize=None, max_bytes=MAX_ARRAY_BYTES) -> int:
    """Refuses a declared array larger than the file can hold or memory should take.

    Args:
        path: str or Path. Named in the message.
        shape: sequence of int. The declared shape.
        dtype: numpy dtype (or anything `np.dtype` takes). The declared voxel type.
        field: str. The header field that declares the shape (named in the message).
        stored_bytes: int, optional. Bytes the file holds for the array.
        compressed: bool, default False. The stored bytes are deflate-compressed: they
            can hold at most `MAX_DEFLATE_RATIO` times as much.
        working_itemsize: int, optional. Bytes per element once loaded (e.g. 4 when
            the loader converts to float32); default the declared type's.
        max_bytes: int, default `MAX_ARRAY_BYTES`.

    Returns:
        int: the declared number of data bytes.

    Raises:
        ValueError: a negative dimension, more data than the file holds, or an array
            above `max_bytes`.
    """
    dtype = np.dtype(dtype)
    dims = [int(d) for d in shape]
    text = " x ".join(str(d) for d in dims) or "a scalar"
    label = field if "'" in field else f"field {field!r}"  # "array 'images'" names itself
    if any(d < 0 for d in dims):
        raise ValueError(f"{path}: {label} declares a negative size ({text}); expected "
                         "sizes >= 0")
    count = math.prod(dims)
    declared = count * dtype.itemsize
    if stored_bytes is not None:
        room = stored_bytes * MAX_DEFLATE_RATIO + 4096 if compressed else stored_bytes
        if declared > room:
            held = f"{human_bytes(stored_bytes)}{' compressed' if compressed else ''}"
            raise ValueError(f"{path}: {label} declares {text} values of {dtype} "
                             f"({human_bytes(declared)}) but the file holds {held}; expected a "
                             "header that matches its data (truncated or forged header?)")
    working = count * (working_itemsize or dtype.itemsize)
    if max(declared, working) > max_bytes:
        raise ValueError(f"{path}: {label} declares {text} values of {dtype} "
                         f"({human_bytes(max(declared, working))} in memory); expected at most "
                         f"{human_bytes(max_bytes)} per array")
    return declared


def check_spacing(path, spacing, *, field, limits=SPACING_RANGE_MM) -> tuple:
    """Refuses voxel sizes that are not finite numbers within `limits` (mm).

    Returns:
        tuple of float: the spacing.
    """
    values = tuple(float(s) for s in spacing)
    low, high = limits
    if not all(math.isfinite(s) and low <= s <= high for s in values):
        shown = ", ".join(f"{s:g}" for s in values)
        raise ValueError(f"{path}: field {field!r} gives voxel size(s) ({shown}) mm; expected "
                         f"finite sizes from {low:g} to {high:g} mm")
    return values


def check_affine(path, affine, *, field="affine", limits=SPACING_RANGE_MM) -> np.ndarray:
    """Refuses an affine with NaN / infinite entries, no inverse, or voxel sizes out of range."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"{path}: field {field!r} (qform/sform) holds NaN or infinite entries; "
                         "expected a finite voxel-to-world matrix")
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    check_spacing(path, sizes, field=f"{field} voxel size", limits=limits)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{path}: field {field!r} (qform/sform) is singular (its axes are not "
                         "independent); expected an invertible voxel-to-world matrix")
    return affine


def load_nifti_header(path, *, grey_only=True, working_itemsize=4):
    """A nibabel image whose header was checked before its voxels are read.

    Args:
        path: str or Path. A `.nii` or `.nii.gz` file.
        grey_only: bool, default True. Refuse complex and RGB / RGBA voxel types.
        working_itemsize: int, default 4. Bytes per voxel once loaded (float32).

    Returns:
        The (lazy) nibabel image.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable header; complex or RGB voxels; dimensions that need more
            data than the file holds or more memory than `MAX_ARRAY_BYTES`.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    try:
        img = nib.load(str(path))
        header = img.header
        dtype = header.get_data_dtype()
        shape = tuple(int(d) for d in header.get_data_shape())
        offset = int(header.get_data_offset()) if hasattr(header, "get_data_offset") else 0
    except (OSError, EOFError, ValueError, struct.error, zlib.error,
            nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{path}: cannot read the NIfTI header ({type(err).__name__}: "
                         f"{reason[:160]}); expected a NIfTI-1 or NIfTI-2 file") from None
    if grey_only:
        if dtype.fields is not None:
            raise ValueError(f"{path}: field 'datatype' is a colour type ({', '.join(dtype.names)} "
                             "per voxel); expected one grey value per voxel (int, uint or float)")
        if dtype.kind == "c":
            raise ValueError(f"{path}: field 'datatype' is complex ({dtype}); expected real grey "
                             "values (int, uint or float): the imaginary part would be dropped")
        if dtype.kind not in "iuf":
            raise ValueError(f"{path}: field 'datatype' is {dtype}; expected int, uint or float "
                             "voxels")
    compressed = path.name.lower().endswith(".gz")
    size = path.stat().st_size
    stored = size if compressed else max(size - offset, 0)
    check_declared_size(path, shape, dtype, field="dim", stored_bytes=stored, compressed=compressed,
                        working_itemsize=working_itemsize)
    return img


def _npy_header(handle):
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(handle)
    return np.lib.format._read_array_header(handle, version)  # noqa: SLF001 - version 3.0


def check_npz(path, *, max_bytes=MAX_ARRAY_BYTES) -> dict:
    """Checks every array header of a `.npz` archive before `np.load` allocates it.

    Returns:
        dict name -> (shape, dtype) of the arrays.

    Raises:
        ValueError: not a zip archive, an unreadable array header, an object array, a
            header that declares more (or other) data than the archive stores for it,
            or an array above `max_bytes`. The message names the file and the array.
    """
    path = Path(path)
    found = {}
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz archive ({type(err).__name__}); expected "
                         "a file written by numpy.savez") from None
    with archive:
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            field = f"array {name!r}"
            compressed = info.compress_type != zipfile.ZIP_STORED
            check_declared_size(path, (info.file_size,), np.uint8, field=f"{field} size",
                                stored_bytes=info.compress_size, compressed=compressed,
                                max_bytes=max_bytes)
            if not info.filename.endswith(".npy"):
                continue
            try:
                with archive.open(info) as handle:
                    shape, _, dtype = _npy_header(handle)
                    header_bytes = handle.tell()
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError,
                    struct.error) as err:
                reason = " ".join(str(err).split())[:120] or type(err).__name__
                raise ValueError(f"{path}: {field} has an unreadable header ({reason}); expected a "
                                 "file written by numpy.savez") from None
            if dtype.hasobject:
                raise ValueError(f"{path}: {field} holds Python objects; expected numeric arrays")
            stored = info.file_size - header_bytes
            declared = check_declared_size(path, shape, dtype, field=field, stored_bytes=stored,
                                           max_bytes=max_bytes)
            if declared != stored:
                raise ValueError(f"{path}: {field} declares shape {tuple(shape)} of {dtype} "
                                 f"({human_bytes(declared)}) but the archive stores "
                                 f"{human_bytes(stored)} for it; expected them to agree")
            found[name] = (tuple(shape), dtype)
    return found


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...), not DHT / JPG / DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_header_size(path):
    """(width, height) declared by a PNG or JPEG header; None for other formats.

    Reads the header only (PNG: the IHDR chunk; JPEG: the first start-of-frame
    segment), so a file declaring a huge image costs nothing to inspect.
    """
    with open(path, "rb") as handle:
        head = handle.read(32)
        if head.startswith(PNG_SIGNATURE):
            if len(head) < 24 or head[12:16] != b"IHDR":
                raise ValueError(f"{path}: PNG without an IHDR chunk; expected a complete PNG image")
            return struct.unpack(">II", head[16:24])
        if not head.startswith(b"\xff\xd8"):
            return None
        handle.seek(2)
        while True:
            byte = handle.read(1)
            while byte == b"\xff":
                byte = handle.read(1)
            if not byte:
                return None
            marker = byte[0]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                continue
            if marker == 0xD9:
                return None
            raw = handle.read(2)
            if len(raw) < 2:
                return None
            length = struct.unpack(">H", raw)[0]
            if marker in _JPEG_SOF:
                body = handle.read(5)
                if len(body) < 5:
                    return None
                height, width = struct.unpack(">HH", body[1:5])
                return width, height
            if marker == 0xDA:  # scan data before any frame header
                return None
            handle.seek(length - 2, 1)


def check_image_header(path, *, max_pixels=MAX_IMAGE_PIXELS, min_side=1):
    """Refuses a PNG / JPEG declaring more than `max_pixels` or a side below `min_side`.

    Returns:
        (width, height), or None when the format has no header read here (TIFF).
    """
    size = image_header_size(path)
    if size is None:
        return None
    width, height = size
    if width * height > max_pixels:
        raise ValueError(f"{path}: the image header declares {width} x {height} pixels; expected "
                         f"at most {max_pixels:,} pixels")
    if min(width, height) < min_side:
        raise ValueError(f"{path}: the image is {width} x {height} pixels; expected at least "
                         f"{min_side} x {min_side}")
    return size


def read_text(path, *, expected) -> str:
    """A text file decoded as UTF-8 (a byte-order mark dropped), naming the file when it is not.

    Args:
        path: str or Path.
        expected: str. What the file should be (ends the message).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ValueError(f"{path}: not UTF-8 text (it starts with a UTF-16 byte-order mark); "
                         f"expected {expected} in UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                         f"{err.start}, line {line}); expected "
                         f"{expected} in UTF-8 (re-export it as UTF-8)") from None


def read_table(path, *, expected, strip=True):
    """Reads a CSV table with a header line, refusing what would silently read wrong.

    Args:
        path: str or Path.
        expected: str. The expected columns in words (ends the messages).
        strip: bool, default True. Strip spaces around column names and cells.

    Returns:
        (columns, rows): the header's column names, and a list of (line number, dict
        column -> cell) for every non-blank line; a short row's missing cells are None.

    Raises:
        ValueError: not UTF-8; a column name given twice (only one of the two would be
            read); a row with more fields than the header. Names the file and line.
    """
    path = Path(path)
    text = read_text(path, expected=expected)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise ValueError(f"{path}, line 1: not a CSV header ({err}); expected {expected}") from None
    columns = [(c.strip() if strip else c) for c in (header or [])]
    seen = {}
    for index, name in enumerate(columns, start=1):
        if name in seen:
            raise ValueError(f"{path}, line 1: column {name!r} appears twice (fields {seen[name]} and "
                             f"{index}); expected each column once, as only one of them would be read")
        seen[name] = index
    rows = []
    try:
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) > len(columns):
                raise ValueError(f"{path}, line {line}: {len(fields)} fields, more than the "
                                 f"{len(columns)} columns of the header; expected {expected} "
                                 "(a value with an unquoted comma?)")
            cells = [(f.strip() if strip else f) for f in fields] + [None] * (len(columns) - len(fields))
            rows.append((line, dict(zip(columns, cells))))
    except csv.Error as err:
        raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({err}); expected "
                         f"{expected}") from None
    return columns, rows


def resolve_inside(folder, name, *, where, field="filename") -> Path:
    """`folder / name` for a name read from a data file, refused when it leaves `folder`.

    An absolute path, a `..` component, or a symbolic link leading out of `folder`
    would let a list file pull in an image from another split or anywhere on disk.

    Args:
        folder: str or Path. The folder the name must stay inside.
        name: str. The name as written in the data file.
        where: str. The data file and line (starts the message).
        field: str, default "filename". The column the name came from.

    Returns:
        Path: `folder / name` (not resolved).

    Raises:
        ValueError: naming `where`, the field and the folder.
    """
    folder = Path(folder)
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise ValueError(f"{where}: field {field!r} is an absolute path ({name!r}); expected a "
                         f"name relative to {folder}")
    if ".." in posix.parts or ".." in windows.parts:
        raise ValueError(f"{where}: field {field!r} leads out of its folder with '..' ({name!r}); "
                         f"expected a file inside {folder}")
    path = folder / name
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise ValueError(f"{where}: field {field!r} ({name!r}) resolves to {path.resolve()}, outside "
                         f"{folder}; expected a file inside that folder (a link leading out?)")
    return path
