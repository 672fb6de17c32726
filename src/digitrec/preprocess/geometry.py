"""Geometry of ink maps shared by digit normalisation and number segmentation: bounding boxes,
gaps, dilation, and anti-aliased resizing with Pillow's coefficients."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image


def grow(mask: np.ndarray, r: int) -> np.ndarray:
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


def extent(s: tuple[slice, slice]) -> tuple[int, int]:
    """(height, width) of a bounding box given as slices."""
    return s[0].stop - s[0].start, s[1].stop - s[1].start


def gap(a: tuple[slice, slice], b: tuple[slice, slice]) -> int:
    """Chebyshev gap in pixels between two boxes (0 when they overlap)."""
    dy = max(0, a[0].start - b[0].stop, b[0].start - a[0].stop)
    dx = max(0, a[1].start - b[1].stop, b[1].start - a[1].stop)
    return max(dy, dx)


def bounds(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding box (row slice, column slice) of a non-empty boolean mask."""
    if mask.dtype == np.bool_ and mask.flags.c_contiguous:
        # the first and last True (numpy's True is the byte 1) give the rows, by a byte
        # search; only the rows between them are looked at for the columns
        data = mask.tobytes()
        first, last = data.find(1), data.rfind(1)
        rows = slice(first // mask.shape[1], last // mask.shape[1] + 1)
        cols = np.flatnonzero(mask[rows].any(axis=0))
        return rows, slice(int(cols[0]), int(cols[-1]) + 1)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
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
            a = box_reduce(a, fx, fy)
    if width != a.shape[1] or extent_x != width:  # horizontal pass first, as Pillow
        a = (a.astype(np.float64) @ _weights(a.shape[1], extent_x, width, down).T)
        a = a.astype(np.float32)
    if height != a.shape[0] or extent_y != height:
        a = (_weights(a.shape[0], extent_y, height, down) @ a.astype(np.float64))
        a = a.astype(np.float32)
    return np.clip(a, 0.0, 1.0)


def box_reduce(a: np.ndarray, fx: int, fy: int) -> np.ndarray:
    """Image.fromarray(a, "F").reduce((fx, fy)) of a float32 image, the same bits. Halving
    (2x2, 2x1, 1x2), the common case, is done here in Pillow's order of operations (Reduce.c,
    ImagingReduceNxN_32bpc and ImagingReduceCorners_32bpc: a block's pixels added in float32
    left to right, then the row below; a partial block at the right or bottom edge added one
    by one in double); Pillow's wrapping of small images costs more than that arithmetic.
    Larger factors are left to Pillow."""
    if (fx, fy) not in ((2, 2), (2, 1), (1, 2)):
        image = Image.fromarray(np.ascontiguousarray(a, np.float32), "F")
        return np.asarray(image.reduce((fx, fy)))
    a = np.asarray(a, np.float32)  # (as Pillow's "F" mode holds it)
    h, w = a.shape
    rows, cols = h // fy, w // fx  # whole blocks; partial ones at the right and bottom edges
    out = np.empty((-(-h // fy), -(-w // fx)), np.float32)
    if rows and cols:
        body, whole = out[:rows, :cols], a[:rows * fy, :cols * fx]
        np.add(whole[0::fy, 0::fx], whole[fy - 1::fy, fx - 1::fx] if fx * fy == 2
               else whole[0::fy, 1::fx], out=body)
        if fx * fy == 4:
            body += whole[1::fy, 0::fx]
            body += whole[1::fy, 1::fx]
        body += np.float32(0.0)  # Pillow's sum starts at +0.0: a -0.0 total becomes +0.0
        body *= np.float32(1.0 / (fx * fy))  # a power of 2: exact, as in double
    if w % fx and rows:  # the right edge (fx = 2): a column of fy pixels a block
        ss = np.zeros(rows)
        for yy in range(fy):
            ss += a[yy:rows * fy:fy, w - 1]
        out[:rows, cols] = ss * (1.0 / fy)
    if h % fy and cols:  # the bottom edge (fy = 2): a row of fx pixels a block
        ss = np.zeros(cols)
        for xx in range(fx):
            ss += a[h - 1, xx:cols * fx:fx]
        out[rows, :cols] = ss * (1.0 / fx)
    if w % fx and h % fy:  # the corner (2x2): one pixel (+0.0, as above)
        out[rows, cols] = a[h - 1, w - 1] + np.float32(0.0)
    return out


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


def fit(a: np.ndarray, side: int) -> np.ndarray:
    """Resize so that the long side is `side`, keeping the aspect ratio."""
    h, w = a.shape
    scale = side / max(h, w)
    return resize(a, max(1, round(w * scale)), max(1, round(h * scale)))
