"""Decoding, safely: bytes, a path, a PIL image or a numpy array → an upright PIL image, with
the pixel budget checked from the header before any pixel is decoded. Plain PNGs are decoded by
libspng (pyspng), the rest by Pillow; every failure is an `InputError` with a precise message."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from digitrec.errors import ImageDecodeError, ImageTooLargeError, InputError

MAX_PIXELS = 40_000_000  # decoded-pixel budget; larger images are refused from their header
WORK_SIDE = 1024  # images are reduced to at most this many pixels on the long side first

FULL_SIZE = "digitrec.full_size"  # image.info key: upright size before reduced decoding

Image.MAX_IMAGE_PIXELS = MAX_PIXELS

ImageSource = bytes | str | os.PathLike | Image.Image | np.ndarray


def _check_size(width: int, height: int) -> None:
    """Refuse empty images and images over the pixel budget (before any pixel is decoded)."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"the image is empty ({width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"the image is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
            f"the limit is {MAX_PIXELS / 1e6:.0f} MP")


def _open_stream(stream: io.IOBase, max_side: int | None,
                 data: bytes | None = None) -> Image.Image:
    """Decode an encoded image: header and size check first, then (maybe reduced) pixels.
    `data`: the stream's bytes, when at hand (a plain PNG is then decoded by libspng)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(
            f"the image has far more than {MAX_PIXELS / 1e6:.0f} MP of pixels; the limit is "
            f"{MAX_PIXELS / 1e6:.0f} MP") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not a readable image: the data is in none of the formats read "
                               "(PNG, JPEG, GIF, BMP, WebP, TIFF)") from None
    except Exception as exc:  # Pillow raises many types on hostile input
        raise ImageDecodeError(f"not a readable image (PNG, JPEG, GIF, BMP, WebP, TIFF): "
                               f"{reason(exc)}") from None
    _check_size(*image.size)
    if data is not None and (fast := _spng_decode(image, data)) is not None:
        return fast
    full_width = image.size[0]
    try:
        if max_side and image.format == "JPEG" and image.mode in ("L", "RGB", "CMYK"):
            image.draft(image.mode, (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
        image.load()
    except Exception as exc:
        raise ImageDecodeError(f"the image data is corrupt or truncated: {reason(exc)}") from None
    factor = full_width / image.size[0]
    try:
        ImageOps.exif_transpose(image, in_place=True)  # (not in place, it copies the pixels)
    except Exception:  # a broken EXIF block should not cost the user the image
        pass
    # the upright size in input pixels, also when draft decoding skipped detail
    image.info[FULL_SIZE] = (round(image.size[0] * factor), round(image.size[1] * factor))
    return image


def _spng_decode(header: Image.Image, data: bytes) -> Image.Image | None:
    """The pixels of a plain PNG (8-bit grey, RGB or RGBA, not interlaced, no
    transparency chunk, no EXIF) decoded by libspng (pyspng): the same pixels as Pillow's
    decoder, in about 60% of the time. None for any other image, or when libspng fails:
    Pillow then decodes it (and words the error, if any)."""
    if (header.format != "PNG" or header.mode not in ("L", "RGB", "RGBA")
            or "transparency" in header.info or len(data) < 33 or data[12:16] != b"IHDR"
            or data[24] != 8 or data[28] != 0 or b"eXIf" in data):  # IHDR: depth, interlace
        return None
    try:
        import pyspng
        pixels = pyspng.load(data, format=header.mode)
    except Exception:  # not installed, or a file libspng refuses (a bad CRC Pillow ignores)
        return None
    if pixels.dtype != np.uint8 or pixels.shape[:2] != (header.size[1], header.size[0]):
        return None
    image = Image.fromarray(pixels)
    image.info[FULL_SIZE] = header.size
    return image


def reason(exc: BaseException) -> str:
    """A short, single-line description of a decoder exception."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _array_to_image(array: np.ndarray) -> Image.Image:
    """Validate a numpy image (2-D grey or 3-D with 1-4 channels) and wrap it as a PIL image."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] not in (1, 2, 3, 4) and a.shape[0] in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first, as in a tensor
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (2, 3, 4)):
        raise InputError(f"expected a 2-D grey image or a 3-D image with 1-4 channels, "
                         f"got an array of shape {array.shape}")
    _check_size(a.shape[1], a.shape[0])
    a = _to_uint8(a)
    mode = "L" if a.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[-1]]
    return Image.fromarray(np.ascontiguousarray(a), mode)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 0..255 from bool, integer (0..255 or 0..65535) or float ([0, 1] or 0..255) data."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        low, high = int(a.min()), int(a.max())
        if low < 0 or high > 65535:
            raise InputError(f"integer pixel values must lie in 0..255 (or 0..65535), "
                             f"got {low}..{high}")
        return a.astype(np.uint8) if high <= 255 else (a // 257).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InputError("the image array contains NaN or infinite values")
        low, high = float(a.min()), float(a.max())
        if low < 0 or high > 255:
            raise InputError(f"float pixel values must lie in [0, 1] (or 0..255), "
                             f"got {low:.3g}..{high:.3g}")
        a = a.astype(np.float32)
        scale = 255.0 if high <= 1.0 else 1.0
        return np.rint(a * scale).astype(np.uint8)
    raise InputError(f"unsupported array dtype {a.dtype}: use uint8 or float in [0, 1]")


def load_image(source: ImageSource, max_side: int | None = None) -> Image.Image:
    """Decode bytes, a path, a PIL image or a numpy array into an upright PIL image.

    `max_side` lets JPEG decoding skip detail that the long side will not keep anyway."""
    if isinstance(source, Image.Image):
        _check_size(*source.size)
        try:
            source.load()  # a lazily opened file may be truncated or corrupt
        except Exception as exc:
            raise ImageDecodeError(f"the image data is corrupt or truncated: {reason(exc)}"
                                   ) from None
        return source
    if isinstance(source, np.ndarray):
        return _array_to_image(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageDecodeError("the upload is empty (0 bytes)")
        data = bytes(source)
        return _open_stream(io.BytesIO(data), max_side, data)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as handle:
                return _open_stream(handle, max_side)
        except OSError as exc:
            raise InputError(f"cannot open {os.fspath(source)!r}: {exc.strerror or exc}") from None
    raise InputError(f"unsupported input type {type(source).__name__}: pass image bytes, "
                     "a path, a PIL image or a numpy array")
