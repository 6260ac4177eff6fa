"""Reading a grey-scale image file (PNG, JPEG, TIFF; 8 or 16 bit, grey or colour).

Shared by the papers whose `predict` and loaders read film-like images
(covidnet_siamese's COVIDx loader and predict, heatmap_loss's predict).
"""

from pathlib import Path

import cv2
import numpy as np

from shared.inputs import MAX_IMAGE_PIXELS, check_image_header

# A film with fewer pixels a side holds no anatomy (a placeholder or a broken export);
# resizing it up to the model's input would invent the whole image.
MIN_IMAGE_SIDE = 16


def read_grayscale(path, *, min_side=MIN_IMAGE_SIDE) -> np.ndarray:
    """Reads an image file as one grey-scale channel scaled to [0, 1] (steps 1 and 3).

    8-bit images are divided by 255 as in the paper; 16-bit images by 65535; float
    images (TIFF) must already lie in [0, 1]. Colour images are converted with
    OpenCV's BGR -> grey weights. A JPEG's EXIF orientation is applied (OpenCV does
    so unless told to keep every channel unchanged, which 16-bit PNGs need).

    The width and height a PNG or JPEG header declares are checked before decoding
    (at most `shared.inputs.MAX_IMAGE_PIXELS`), so a forged header costs no memory.

    Args:
        path: str or Path.
        min_side: int, default `MIN_IMAGE_SIDE` (16). Smallest accepted height and width.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it cannot be decoded, declares too many pixels, is smaller than
            `min_side`, has an unsupported dtype or channel count, or holds NaN / Inf
            or values outside [0, 1] (float images).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    _check_complete(path)
    check_image_header(path, min_side=min_side)
    # ANYDEPTH | ANYCOLOR keeps 16 bits and colour but, unlike IMREAD_UNCHANGED,
    # honours the EXIF orientation tag.
    try:
        image = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as err:  # e.g. a TIFF declaring more pixels than OpenCV's limit
        reason = " ".join(str(err).split())[-160:]
        raise ValueError(f"{path}: unreadable image file (OpenCV: {reason}); expected a PNG, JPEG or TIFF "
                         f"image of at most {MAX_IMAGE_PIXELS:,} pixels") from None
    if image is None or image.size == 0:
        raise ValueError(f"{path}: unreadable image file; expected a PNG, JPEG or TIFF image with 1, 3 or 4 "
                         f"channels that OpenCV can decode")
    if min(image.shape[:2]) < min_side:
        raise ValueError(f"{path}: the image is {image.shape[1]} x {image.shape[0]} pixels; expected at "
                         f"least {min_side} x {min_side}")
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise ValueError(f"{path}: expected 1, 3 or 4 channels, found {image.shape[2]}")
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype in (np.float32, np.float64):
        image = image.astype(np.float32)
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{path}: pixel values must be finite; found "
                             f"{int(np.sum(~np.isfinite(image)))} NaN/Inf pixel(s)")
        if image.min() < 0.0 or image.max() > 1.0:
            raise ValueError(f"{path}: float pixel values must lie in [0, 1], found "
                             f"[{image.min():g}, {image.max():g}]")
        return image
    raise ValueError(f"{path}: pixel dtype must be uint8, uint16 or float in [0, 1], found {image.dtype}")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _check_complete(path) -> None:
    """Refuses a truncated PNG or JPEG file.

    OpenCV decodes a JPEG cut short without an error (the missing rows come out
    grey), so a truncated film would silently enter the training set. A complete PNG
    ends with its IEND chunk, a complete JPEG with the end-of-image marker (padding
    after it is allowed).

    Raises:
        ValueError: naming the file and the missing end marker.
    """
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    if head.startswith(PNG_SIGNATURE) and b"IEND" not in tail[-16:]:
        raise ValueError(f"{path}: truncated PNG file; expected it to end with the IEND chunk")
    if head.startswith(JPEG_START) and not tail.rstrip(b"\x00").endswith(JPEG_END):
        raise ValueError(f"{path}: truncated JPEG file; expected it to end with the end-of-image "
                         f"marker FFD9")
