"""The MNIST recipe for any input: decode safely, find the ink (alpha, polarity, background,
noise), then crop, normalise the stroke, fit a 20 px box and centre by mass in 28x28.

`preprocess(source)` is what every caller uses; `to_ink` and `normalize_digit` are its two
halves at full resolution, shared with `digitrec.segment` for whole numbers (`preprocess`
first tries a reduced resolution, enough for a digit that fills a drawing canvas).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage as ndi

MAX_PIXELS = 40_000_000  # decoded-pixel budget; larger images are refused from their header
WORK_SIDE = 1024  # images are reduced to at most this many pixels on the long side first
BOX = 20  # MNIST fits each digit in a 20x20 box...
SIZE = 28  # ...inside a 28x28 field, with the centre of mass at (14, 14)
STROKE_SIDE = 64  # working resolution (long side) for stroke-width normalisation
PREVIEW_SIDE = 128  # preprocess looks first at PREVIEW_SIDE..2x PREVIEW_SIDE px on the long side
# Stroke width / long side of the digit, as `_stroke_ratio` measures MNIST test digits: about
# the 6th and 99.7th percentiles. Digits outside the band (a hairline, a fat marker) are thickened
# or thinned to a typical MNIST width, STROKE_TARGET (it read best on the thin and thick
# benchmark conditions); digits inside it are left alone.
STROKE_RANGE = (0.085, 0.25)
STROKE_TARGET = 0.14

FULL_SIZE = "digitrec.full_size"  # image.info key: upright size before reduced decoding

Image.MAX_IMAGE_PIXELS = MAX_PIXELS

ImageSource = bytes | str | os.PathLike | Image.Image | np.ndarray


class InputError(ValueError):
    """The input cannot be read as a digit; the message is meant for the user."""


class ImageDecodeError(InputError):
    """Not an image, or a corrupt, truncated or unsupported one."""


class ImageTooLargeError(InputError):
    """The image has more pixels than MAX_PIXELS."""


class NoDigitError(InputError):
    """The image holds no ink: blank, uniform, all black or white, or only specks."""


# ----------------------------------------------------------------------------- decoding


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
    except Exception as exc:  # Pillow raises many types on hostile input
        raise ImageDecodeError(f"not a readable image (PNG, JPEG, GIF, BMP, WebP, TIFF): "
                               f"{_reason(exc)}") from None
    _check_size(*image.size)
    if data is not None and (fast := _spng_decode(image, data)) is not None:
        return fast
    full_width = image.size[0]
    try:
        if max_side and image.format == "JPEG" and image.mode in ("L", "RGB", "CMYK"):
            image.draft(image.mode, (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
        image.load()
    except Exception as exc:
        raise ImageDecodeError(f"the image data is corrupt or truncated: {_reason(exc)}") from None
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


def _reason(exc: BaseException) -> str:
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


# ----------------------------------------------------------------------------- planes


def _planes(image: Image.Image, factor: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey and alpha planes, float32 in [0, 1], of an image in a `_grey_mode` mode,
    box-reduced by `factor` (default: as much as brings the long side within WORK_SIDE)."""
    factor = factor or math.ceil(max(image.size) / WORK_SIDE)
    if factor > 1 and image.mode in ("L", "LA"):
        image = image.reduce(factor)
    if image.mode == "L":
        return _unit(np.asarray(image)), None
    if image.mode == "LA":
        la = np.asarray(image)
        return _unit(la[..., 0]), _unit(la[..., 1])
    return _block_reduce(_wide_grey(image), factor), None


def _unit(plane: np.ndarray) -> np.ndarray:
    """uint8 plane → float32 in [0, 1], in one pass."""
    return np.multiply(plane, np.float32(1 / 255), dtype=np.float32)


def _grey_mode(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to L, LA (when there is transparency) or a high-bit-depth mode."""
    mode = image.mode
    if mode == "L" or mode.startswith("I") or mode == "F":
        return image
    try:
        if mode in ("RGBA", "LA") and _min_alpha(image) == 255:
            return image.convert("L")  # opaque: the alpha channel carries nothing
        if mode == "LA":
            return image
        if mode == "RGBA":
            return image.convert("LA")
        if mode in ("PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
            return image.convert("RGBA").convert("LA")
        if mode == "LAB":
            return image.getchannel("L")
        if mode == "HSV":
            return image.convert("RGB").convert("L")
        return image.convert("L")
    except Exception as exc:
        raise ImageDecodeError(f"unsupported image mode {mode}: {_reason(exc)}") from None


def _min_alpha(image: Image.Image) -> int:
    """The lowest alpha of an RGBA or LA image (unpacking the band alone is fastest)."""
    band = image.tobytes("raw", "A") if image.mode == "RGBA" else image.getchannel("A").tobytes()
    return int(np.frombuffer(band, np.uint8).min())


def _wide_grey(image: Image.Image) -> np.ndarray:
    """16/32-bit integer or float images as float32 in [0, 1]."""
    a = np.asarray(image).astype(np.float32)
    if not np.isfinite(a).all():
        raise ImageDecodeError("the image contains NaN or infinite pixel values")
    low, high = float(a.min()), float(a.max())
    if image.mode == "F" and low >= 0 and high <= 1:
        return a
    if low >= 0 and high <= 255 and image.mode != "F":
        return a / 255.0
    if low >= 0 and high <= 65535 and image.mode != "F":
        return a / 65535.0
    return (a - low) / (high - low) if high > low else np.zeros_like(a)


def _block_reduce(a: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor` x `factor` blocks (a partial block at the edge is dropped)."""
    if factor <= 1:
        return a
    h, w = a.shape[0] // factor * factor, a.shape[1] // factor * factor
    return a[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


# ----------------------------------------------------------------------------- ink


def _sample(a: np.ndarray, n: int = 16384) -> np.ndarray:
    """A strided subsample of about n pixels, for fast robust statistics."""
    step = max(1, math.isqrt(a.size // n))
    return a[::step, ::step]


def _quantile(values: np.ndarray, q: float) -> float:
    """np.quantile(values, q) with linear interpolation (numpy's default), by partial sort:
    the same number, several times cheaper on the small arrays of this module."""
    flat = np.ravel(values)
    position = (flat.size - 1) * q
    below = math.floor(position)
    above = min(below + 1, flat.size - 1)
    part = np.partition(flat, (below, above))
    low, high = float(part[below]), float(part[above])
    return low + (high - low) * (position - below)


def _ring(a: np.ndarray) -> np.ndarray:
    """The pixels of a thin band along the border (where the background usually is)."""
    h, w = a.shape
    band = max(1, min(h, w) // 40)
    if h <= 2 * band or w <= 2 * band:
        return a.ravel()
    return np.concatenate([a[:band].ravel(), a[-band:].ravel(),
                           a[band:-band, :band].ravel(), a[band:-band, -band:].ravel()])


def _noise_sigma(a: np.ndarray) -> float:
    """Pixel noise level, blind to how much ink there is: the median absolute difference of
    horizontal neighbours (flat paper and flat stroke cores alike give 0 without noise)."""
    s = _sample(a, 4096)
    if s.shape[1] < 2:
        return 0.0
    return _quantile(np.abs(np.diff(s, axis=1)), 0.5) / (0.6745 * math.sqrt(2))


def _ink_signal(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Ink-bright signal with the background at 0, and its noise level: picks the polarity
    (dark on light or light on dark) from which side of the border colour holds more
    contrast mass."""
    background = _quantile(_ring(grey), 0.5)
    dev = _sample(grey) - background
    sigma = _noise_sigma(grey)
    t = max(3.0 * sigma, 0.02)
    dark = float(np.clip(-dev - t, 0, None).sum())
    light = float(np.clip(dev - t, 0, None).sum())
    return (background - grey if dark > light else grey - background), sigma


def _shading(v: np.ndarray) -> np.ndarray | float:
    """Background of an ink-bright signal (shadows, uneven light), or 0 when it is flat.
    Block medians on a coarse grid, eroded so that blocks inside strokes take their
    neighbours' value, decide: uneven light shows along the border, where bold strokes of a
    large digit do not. The surface is then a grey opening wider than any stroke (it keeps
    shadow edges sharp)."""
    h, w = v.shape
    if min(h, w) < 48:
        return 0.0
    # Shortcut: with all of the border blocks' pixels within 0.025 of the background, their
    # medians lie within 0.05 of each other. (The erosion below also looks one block further
    # in; on 300 digits of each benchmark condition the shortcut changed no output.)
    band = min(h, w) // 8
    if max(_abs_max(v[:band]), _abs_max(v[-band:]), _abs_max(v[:, :band]),
           _abs_max(v[:, -band:])) <= 0.025:
        return 0.0
    coarse = np.asarray(Image.fromarray(v, "F").resize((64, 64), Image.BOX))
    blocks = coarse.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(8, 8, 64)
    grid = np.partition(blocks, (31, 32), axis=2)[..., 31:33].mean(axis=2)  # block medians
    grid = ndi.grey_erosion(grid, size=3)
    border = np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])
    if np.count_nonzero(np.abs(border - _quantile(border, 0.5)) > 0.05) < 4:
        return 0.0  # flat, or only a stroke or two reaching the edge
    size = max(9, min(h, w) // 4)
    return ndi.uniform_filter(ndi.grey_opening(v, size=(size, size)), size=5)


def _abs_max(a: np.ndarray) -> float:
    """max |a| without a temporary array."""
    return max(float(a.max()), -float(a.min()))


def _ramp(v: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Map the background-free signal to ink in [0, 1]: a soft ramp from just above the noise
    floor to the typical stroke-core contrast, so anti-aliased edges stay grey. `sigma`: the
    signal's noise level when the caller knows it."""
    sigma = _noise_sigma(v) if sigma is None else sigma
    if sigma > 0.03 and min(v.shape) >= 40:
        v = ndi.gaussian_filter(v, 1.0)  # average out sensor noise before thresholding
        sigma = _noise_sigma(v)
    candidates = v[v > max(4.0 * sigma, 0.05)]
    if candidates.size < 2:
        raise NoDigitError("no digit found: the image is blank or uniform")
    step = max(1, candidates.size // 8192)
    peak = _quantile(candidates[::step], 0.9)
    if peak < max(0.08, 5.0 * sigma):
        raise NoDigitError("no digit found: the image has too little contrast")
    low = max(3.5 * sigma, 0.02 * peak)
    high = max(peak, low + 0.05)
    ink = np.subtract(v, low, dtype=np.float32)
    ink *= 1.0 / (high - low)
    return np.clip(ink, 0.0, 1.0, out=ink)


def _ink_from_planes(grey: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Ink from grey (and alpha): transparency decides the ink when the visible pixels are all
    one colour (canvas strokes); otherwise the image is composited onto its paper colour."""
    if alpha is not None:
        if float(alpha.max()) < 0.02:
            raise NoDigitError("no digit found: the image is fully transparent")
        if float(alpha.min()) < 0.9:
            opaque = grey[alpha > 0.5]
            if opaque.size == 0 or float(_sample_std(opaque)) < 0.1:
                return _ramp(*_ink_signal(alpha))  # one stroke colour: alpha is the drawing
            paper = _quantile(opaque[:: max(1, opaque.size // 16384)], 0.5)
            grey = grey * alpha + paper * (1.0 - alpha)
    v, sigma = _ink_signal(grey)
    shading = _shading(v)
    if isinstance(shading, float):  # flat background: v and its noise level stand
        return _ramp(v, sigma)
    return _ramp(v - shading)


def _sample_std(values: np.ndarray) -> float:
    """Standard deviation of a flat array, on a subsample when large."""
    return float(values[:: max(1, values.size // 16384)].std())


def _ink_and_scale(source: ImageSource) -> tuple[np.ndarray, tuple[float, float]]:
    """Ink map plus (sy, sx): input pixels per ink-map pixel (for boxes in input coordinates)."""
    image = load_image(source, max_side=WORK_SIDE)
    width, height = image.info.get(FULL_SIZE, image.size)
    grey, alpha = _planes(_grey_mode(image))
    return _ink_from_planes(grey, alpha), (height / grey.shape[0], width / grey.shape[1])


def to_ink(source: ImageSource) -> np.ndarray:
    """Ink map float32 (H, W) in [0, 1] (1 = ink) of any input, at most WORK_SIDE on a side."""
    return _ink_and_scale(source)[0]


# ----------------------------------------------------------------------------- normalisation


def _validate_ink(ink: np.ndarray) -> np.ndarray:
    """float32 2-D ink in [0, 1]; InputError for anything else."""
    a = np.asarray(ink)
    if a.ndim != 2 or a.size == 0:
        raise InputError(f"expected a 2-D ink map, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
            or a.dtype == np.bool_):
        raise InputError(f"unsupported ink dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError("the ink map contains NaN or infinite values")
    return np.clip(a, 0.0, 1.0)


def _keep_digit(ink: np.ndarray, image_side: int) -> np.ndarray:
    """Crop to the digit: drop specks (tiny components, and small ones far from the main
    stroke), keep the anti-aliased fringe of what stays. Raises NoDigitError if none is left."""
    strong = ink > 0.25 * float(ink.max())
    labels, n = ndi.label(strong, structure=np.ones((3, 3), bool))
    if n == 1:  # one connected stroke: nothing to drop
        mask, kept_mass = strong, float(ink.sum(where=strong))
    else:
        mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
        slices = ndi.find_objects(labels)
        main = int(mass.argmax())
        keep = mass >= 0.03 * mass[main]
        span = max(_extent(slices[main]))
        for i in np.flatnonzero(keep & (mass < 0.15 * mass[main])):
            if _gap(slices[i], slices[main]) > 0.3 * span:
                keep[i] = False
        mask, kept_mass = np.concatenate([[False], keep])[labels], float(mass[keep].sum())
    ys, xs = _bounds(mask)
    side = max(ys.stop - ys.start, xs.stop - xs.start)
    if kept_mass < 3.0 or side < 3 or side < 0.015 * image_side:
        raise NoDigitError("no digit found: only specks of ink")
    ys = slice(max(0, ys.start - 2), ys.stop + 2)
    xs = slice(max(0, xs.start - 2), xs.stop + 2)
    crop = ink[ys, xs] * _grow(mask[ys, xs], 2)
    return crop[_bounds(crop > 0)]


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """A boolean mask dilated by r pixels in every direction (a square; outside is False):
    ndi.maximum_filter(mask, 2r + 1, mode="constant"), by shifted ORs, several times faster."""
    h, w = mask.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), bool)
    padded[r:r + h, r:r + w] = mask
    rows = padded[:h].copy()
    for d in range(1, 2 * r + 1):
        rows |= padded[d:d + h]
    out = rows[:, :w].copy()
    for d in range(1, 2 * r + 1):
        out |= rows[:, d:d + w]
    return out


def _extent(s: tuple[slice, slice]) -> tuple[int, int]:
    """(height, width) of a bounding box given as slices."""
    return s[0].stop - s[0].start, s[1].stop - s[1].start


def _gap(a: tuple[slice, slice], b: tuple[slice, slice]) -> int:
    """Chebyshev gap in pixels between two boxes (0 when they overlap)."""
    dy = max(0, a[0].start - b[0].stop, b[0].start - a[0].stop)
    dx = max(0, a[1].start - b[1].stop, b[1].start - a[1].stop)
    return max(dy, dx)


def _bounds(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding box (row slice, column slice) of a non-empty boolean mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased resize of a float image: Lanczos down (after a box reduction to within 2x
    of the target), bicubic up. Pillow's resampling of float images, computed as two small
    matrix products (Pillow loops over pixels in float mode: several times slower here)."""
    if a.shape == (height, width):
        return a
    a = np.asarray(a, dtype=np.float32)
    down = width <= a.shape[1] and height <= a.shape[0]
    extent_y, extent_x = float(a.shape[0]), float(a.shape[1])
    if down:  # Image.resize(..., reducing_gap=2.0)
        fy, fx = int(a.shape[0] / height / 2.0) or 1, int(a.shape[1] / width / 2.0) or 1
        if fy > 1 or fx > 1:
            extent_y, extent_x = _f32(a.shape[0] / fy), _f32(a.shape[1] / fx)
            a = np.asarray(Image.fromarray(a, "F").reduce((fx, fy)))
    if width != a.shape[1] or extent_x != width:  # horizontal pass first, as Pillow
        a = (a.astype(np.float64) @ _weights(a.shape[1], extent_x, width, down).T)
        a = a.astype(np.float32)
    if height != a.shape[0] or extent_y != height:
        a = (_weights(a.shape[0], extent_y, height, down) @ a.astype(np.float64))
        a = a.astype(np.float32)
    return np.clip(a, 0.0, 1.0)


def _f32(x: float) -> float:
    """x rounded to float32 (Pillow passes resampling boxes as C floats)."""
    return float(np.float32(x))


@functools.lru_cache(maxsize=4096)
def _weights(size_in: int, extent: float, size_out: int, lanczos: bool) -> np.ndarray:
    """(size_out, size_in) resampling matrix with Pillow's coefficients (Resample.c,
    precompute_coeffs): Lanczos-3 or bicubic (a = -0.5), widened by the scale when reducing,
    each row normalised to sum 1."""
    scale = extent / size_out
    filterscale = max(scale, 1.0)
    support = (3.0 if lanczos else 2.0) * filterscale
    centre = (np.arange(size_out) + 0.5) * scale
    low = np.maximum((centre - support + 0.5).astype(int), 0)
    high = np.minimum((centre + support + 0.5).astype(int), size_in)
    x = np.arange(size_in)[None, :]
    t = np.abs((x - centre[:, None] + 0.5) * (1.0 / filterscale))
    if lanczos:
        w = np.where(t < 3.0, np.sinc(t) * np.sinc(t / 3.0), 0.0)
    else:
        w = np.where(t < 1.0, (1.5 * t - 2.5) * t * t + 1.0,
                     np.where(t < 2.0, (((t - 5.0) * t + 8.0) * t - 4.0) * -0.5, 0.0))
    w[(x < low[:, None]) | (x >= high[:, None])] = 0.0
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total != 0.0)
    w.flags.writeable = False
    return w


def _fit(a: np.ndarray, side: int) -> np.ndarray:
    """Resize so that the long side is `side`, keeping the aspect ratio."""
    h, w = a.shape
    scale = side / max(h, w)
    return _resize(a, max(1, round(w * scale)), max(1, round(h * scale)))


def _stroke_ratio(work: np.ndarray) -> float:
    """Stroke width / long side: 2 x ink mass / perimeter (a band of width w and length L has
    area wL and perimeter about 2L), on an image whose long side is STROKE_SIDE."""
    mask = work > 0.5
    interior = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]  # the 4-neighbourhood
                & mask[1:-1, :-2] & mask[1:-1, 2:])              # erosion, as ndi does it
    perimeter = int(np.count_nonzero(mask)) - int(np.count_nonzero(interior))
    if perimeter == 0:
        return STROKE_RANGE[0]
    return 2.0 * float(work.sum()) / perimeter / STROKE_SIDE


def _normalise_stroke(crop: np.ndarray) -> np.ndarray:
    """Thicken hairlines and thin fat marker strokes to MNIST's range of stroke widths, with
    soft (anti-aliased) distance-transform dilation or erosion at a working resolution."""
    work = _fit(crop, STROKE_SIDE)
    work = work / max(float(work.max()), 1e-6)
    ratio = _stroke_ratio(work)
    target = min(max(ratio, STROKE_RANGE[0]), STROKE_RANGE[1])
    if target != ratio and STROKE_TARGET:
        target = STROKE_TARGET
    if target == ratio:
        return crop
    delta = (target - ratio) * STROKE_SIDE / 2.0  # pixels to add (or remove) on each side
    mask = work > 0.5
    if delta > 0:
        pad = math.ceil(delta) + 1
        work, mask = np.pad(work, pad), np.pad(mask, pad)
        grown = np.clip(delta + 1.0 - ndi.distance_transform_edt(~mask), 0.0, 1.0)
        work = np.maximum(work, grown.astype(np.float32))
    else:
        depth = ndi.distance_transform_edt(mask)
        # thin fat strokes by -delta, but never by more than a third of the local width, so
        # that a thin part (the bar of a 5) survives next to fat ones
        reach = 2 * math.ceil(-delta) + 1
        shrink = np.minimum(-delta, 0.65 * ndi.maximum_filter(depth, size=reach))
        work = np.clip(depth - shrink, 0.0, 1.0).astype(np.float32)
    if not (work > 0).any():
        return crop
    ys, xs = _bounds(work > 0)
    return work[ys, xs]


def _centre(digit: np.ndarray) -> np.ndarray:
    """Paste into 28x28 so that the centre of mass lands on pixel (14, 14), as MNIST does."""
    total = float(digit.sum())
    h, w = digit.shape
    cy = float((digit.sum(axis=1) * np.arange(h)).sum()) / total
    cx = float((digit.sum(axis=0) * np.arange(w)).sum()) / total
    oy, ox = math.floor(14.0 - cy + 0.5), math.floor(14.0 - cx + 0.5)
    out = np.zeros((SIZE, SIZE), np.float32)
    y0, x0 = max(0, oy), max(0, ox)
    y1, x1 = min(SIZE, oy + h), min(SIZE, ox + w)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = digit[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    return out


def _rough_crop(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The box around all clear ink plus a 2 px fringe, block-averaged by the returned
    factor when large (nothing downstream needs more than STROKE_SIDE pixels across)."""
    peak = float(ink.max())
    if peak < 0.05:
        raise NoDigitError("no digit found: the image is blank")
    ys, xs = _bounds(ink > 0.25 * peak)
    crop = ink[max(0, ys.start - 2):ys.stop + 2, max(0, xs.start - 2):xs.stop + 2]
    factor = max(crop.shape) // STROKE_SIDE
    h, w = crop.shape[0] // max(1, factor) * factor, crop.shape[1] // max(1, factor) * factor
    if factor < 2 or min(h, w) == 0:
        return crop, 1
    blocks = Image.fromarray(np.ascontiguousarray(crop[:h, :w]), "F").reduce(factor)
    return np.asarray(blocks), factor


def _digit_crop(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The digit alone (specks dropped, 2 px fringe kept) and how many ink-map pixels each of
    its pixels spans (block-averaged when large)."""
    rough, factor = _rough_crop(ink)
    return _keep_digit(rough, max(ink.shape) // factor), factor


def _to_mnist(crop: np.ndarray) -> np.ndarray:
    """The cropped digit as MNIST has it: stroke normalised, long side 20 px, centre of mass at
    (14, 14), uint8 light on black."""
    digit = _fit(_normalise_stroke(crop), BOX)
    peak = float(digit.max())
    if peak <= 0:
        raise NoDigitError("no digit found: the ink vanished at 20 px")
    digit = digit * (1.0 / peak)
    return np.rint(_centre(digit) * 255.0).astype(np.uint8)


def normalize_digit(ink: np.ndarray) -> np.ndarray:
    """MNIST-style uint8 (28, 28), light ink on black, from an ink map of one digit: crop,
    stroke normalisation, long side to 20 px, centre of mass at (14, 14)."""
    return _to_mnist(_digit_crop(_validate_ink(ink))[0])


def preprocess(source: ImageSource) -> np.ndarray:
    """Any image of one digit → the uint8 (28, 28) MNIST-style image the models read.

    A first look at 1/2 or less of the resolution (long side PREVIEW_SIDE..2x) is enough when
    the digit still spans STROKE_SIDE pixels there, as on a drawing canvas: everything after
    decoding then touches a quarter of the pixels or fewer. Smaller digits are read at full
    resolution."""
    image = _grey_mode(load_image(source, max_side=WORK_SIDE))
    factor = max(image.size) // PREVIEW_SIDE
    if factor >= 2:
        with contextlib.suppress(NoDigitError):
            crop, scale = _digit_crop(_ink_from_planes(*_planes(image, factor)))
            if max(crop.shape) * scale >= STROKE_SIDE:
                return _to_mnist(crop)
    return _to_mnist(_digit_crop(_ink_from_planes(*_planes(image)))[0])
