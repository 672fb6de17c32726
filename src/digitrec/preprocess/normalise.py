"""An ink map of one digit → MNIST's format: crop (specks dropped), stroke width normalised,
long side BOX px, centre of mass at the middle of a SIZE x SIZE field, uint8 light on black."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from digitrec.errors import InputError, NoDigitError
from digitrec.preprocess.geometry import bounds, box_reduce, fit, gap, grow
from digitrec.preprocess.geometry import extent as box_extent

BOX = 20  # MNIST fits each digit in a 20x20 box...
SIZE = 28  # ...inside a 28x28 field, with the centre of mass at (14, 14)
STROKE_SIDE = 64  # working resolution (long side) for stroke-width normalisation

# Stroke width / long side of the digit, as `_stroke_ratio` measures MNIST test digits: about
# the 6th and 99.7th percentiles. Digits outside the band (a hairline, a fat marker) are thickened
# or thinned to a typical MNIST width, STROKE_TARGET (it read best on the thin and thick
# benchmark conditions); digits inside it are left alone.
STROKE_RANGE = (0.085, 0.25)
STROKE_TARGET = 0.14


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


_EIGHT = np.ones((3, 3), bool)  # 8-connectivity, for ndi.label
_MIN_MASS = 3.0  # less ink than this in the kept strokes is only specks


class _Strong(NamedTuple):
    """The clear ink of a crop: above `threshold` (a quarter of the peak), within `box`."""

    mask: np.ndarray
    box: tuple[slice, slice]
    threshold: np.floating


def _keep_digit(ink: np.ndarray, image_side: int, strong: _Strong | None = None) -> np.ndarray:
    """Crop to the digit: drop specks (tiny components, and small ones far from the main
    stroke), keep the anti-aliased fringe of what stays. Raises NoDigitError if none is left.
    `strong`: the crop's clear ink, when the caller has it."""
    if strong is None:
        threshold = ink.dtype.type(0.25 * float(ink.max()))  # (as numpy casts it)
        mask, box = ink > threshold, None
    else:
        mask, box, threshold = strong
    labels, n = ndi.label(mask, structure=_EIGHT)
    if n == 0:  # the ink lay only in a partial block that _rough_crop's averaging dropped
        raise NoDigitError("no digit found: only specks of ink at the image's edge")
    if n == 1:  # one connected stroke: nothing to drop
        ys, xs = box or bounds(mask)
        light = _lighter_than(ink, mask, threshold, _MIN_MASS)
    else:
        mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
        slices = ndi.find_objects(labels)
        main = int(mass.argmax())
        keep = mass >= 0.03 * mass[main]
        span = max(box_extent(slices[main]))
        for i in np.flatnonzero(keep & (mass < 0.15 * mass[main])):
            if gap(slices[i], slices[main]) > 0.3 * span:
                keep[i] = False
        mask, light = np.concatenate([[False], keep])[labels], float(mass[keep].sum()) < _MIN_MASS
        ys, xs = bounds(mask)
    side = max(ys.stop - ys.start, xs.stop - xs.start)
    if light or side < 3 or side < 0.015 * image_side:
        raise NoDigitError("no digit found: only specks of ink")
    ys = slice(max(0, ys.start - 2), ys.stop + 2)
    xs = slice(max(0, xs.start - 2), xs.stop + 2)
    crop = ink[ys, xs] * grow(mask[ys, xs], 2)
    return crop[bounds(crop > 0)]


def _lighter_than(ink: np.ndarray, mask: np.ndarray, floor: np.floating, least: float) -> bool:
    """float(ink.sum(where=mask)) < least, where every masked pixel is above `floor`: the count
    alone says no when count x floor clears `least` by more than the sum's rounding error
    (sequential float32 sums err by under count x 2^-23 of the total)."""
    count = int(np.count_nonzero(mask))
    if count * float(floor) * (1.0 - count * 2.0 ** -22) >= least:
        return False
    return float(ink.sum(where=mask)) < least


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
    work = fit(crop, STROKE_SIDE)
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
        work, mask = _pad(work, pad), _pad(mask, pad)
        grown = np.clip(delta + 1.0 - _distance_below(mask, delta + 1.0), 0.0, 1.0)
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
    ys, xs = bounds(work > 0)
    return work[ys, xs]


def _distance_below(mask: np.ndarray, reach: float) -> np.ndarray:
    """ndi.distance_transform_edt(~mask), the distance from each pixel to the nearest pixel of
    a non-empty `mask`, where it is below `reach` (reach or more elsewhere), for the few pixels
    a hairline grows by: squared distances (small integers) to the nearest mask pixel within
    reach down each column, then along each row; the same float64 square roots."""
    r = math.ceil(reach)  # pixels further away along either axis are at least reach away
    if 2 * r * r >= _FAR or not mask.any():
        return ndi.distance_transform_edt(~mask)
    h, w = mask.shape
    column = np.full((h + 2 * r, w), _FAR, np.uint8)  # _FAR: no mask pixel within reach
    np.multiply(~mask, np.uint8(_FAR), out=column[r:r + h])
    down = column[r:r + h].copy()
    for d in range(1, r + 1):
        for shifted in (column[r - d:r - d + h], column[r + d:r + d + h]):
            np.minimum(down, np.maximum(shifted, d * d), out=down)
    row = np.full((w + 2 * r, h), _FAR, np.uint16)  # transposed: shifted rows are contiguous
    row[r:r + w] = down.T
    squared = row[r:r + w].copy()
    for d in range(1, r + 1):
        for shifted in (row[r - d:r - d + w], row[r + d:r + d + w]):
            np.minimum(squared, shifted + d * d, out=squared)
    return np.sqrt(squared.T, dtype=np.float64)


_FAR = 255  # squared distances from here on stand for "none within reach"


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    """np.pad(a, n): n zeros on every side (without np.pad's general machinery)."""
    out = np.zeros((a.shape[0] + 2 * n, a.shape[1] + 2 * n), a.dtype)
    out[n:n + a.shape[0], n:n + a.shape[1]] = a
    return out


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


def _rough_crop(ink: np.ndarray) -> tuple[np.ndarray, int, _Strong | None]:
    """The box around all clear ink plus a 2 px fringe, block-averaged by the returned
    factor when large (nothing downstream needs more than STROKE_SIDE pixels across); when
    not, also the clear ink in it (the crop holds the peak: the same threshold)."""
    peak = float(ink.max())
    if peak < 0.05:
        raise NoDigitError("no digit found: the image is blank")
    threshold = ink.dtype.type(0.25 * peak)  # (as numpy casts it in the comparison)
    strong = ink > threshold
    ys, xs = bounds(strong)
    y0, x0 = max(0, ys.start - 2), max(0, xs.start - 2)
    box = slice(y0, ys.stop + 2), slice(x0, xs.stop + 2)
    crop = ink[box]
    factor = max(crop.shape) // STROKE_SIDE
    h, w = crop.shape[0] // max(1, factor) * factor, crop.shape[1] // max(1, factor) * factor
    if factor < 2 or min(h, w) == 0:
        inner = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
        return crop, 1, _Strong(strong[box], inner, threshold)
    return box_reduce(crop[:h, :w], factor, factor), factor, None


def digit_crop(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The digit alone (specks dropped, 2 px fringe kept) and how many ink-map pixels each of
    its pixels spans (block-averaged when large)."""
    rough, factor, strong = _rough_crop(ink)
    return _keep_digit(rough, max(ink.shape) // factor, strong), factor


def to_mnist(crop: np.ndarray) -> np.ndarray:
    """The cropped digit as MNIST has it: stroke normalised, long side 20 px, centre of mass at
    (14, 14), uint8 light on black."""
    digit = fit(_normalise_stroke(crop), BOX)
    peak = float(digit.max())
    if peak <= 0:
        raise NoDigitError("no digit found: the ink vanished at 20 px")
    digit = digit * (1.0 / peak)
    return np.rint(_centre(digit) * 255.0).astype(np.uint8)


def normalize_digit(ink: np.ndarray) -> np.ndarray:
    """MNIST-style uint8 (28, 28), light ink on black, from an ink map of one digit: crop,
    stroke normalisation, long side to 20 px, centre of mass at (14, 14)."""
    return to_mnist(digit_crop(_validate_ink(ink))[0])
