"""An ink map of one digit → MNIST's format: crop (specks dropped), stroke width normalised,
long side BOX px, centre of mass at the middle of a SIZE x SIZE field, uint8 light on black."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from digitrec.errors import InputError, NoDigitError
from digitrec.preprocess.geometry import bounds, fit, gap, grow
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


def _keep_digit(ink: np.ndarray, image_side: int) -> np.ndarray:
    """Crop to the digit: drop specks (tiny components, and small ones far from the main
    stroke), keep the anti-aliased fringe of what stays. Raises NoDigitError if none is left."""
    strong = ink > 0.25 * float(ink.max())
    labels, n = ndi.label(strong, structure=np.ones((3, 3), bool))
    if n == 0:  # the ink lay only in a partial block that _rough_crop's averaging dropped
        raise NoDigitError("no digit found: only specks of ink at the image's edge")
    if n == 1:  # one connected stroke: nothing to drop
        mask, kept_mass = strong, float(ink.sum(where=strong))
    else:
        mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
        slices = ndi.find_objects(labels)
        main = int(mass.argmax())
        keep = mass >= 0.03 * mass[main]
        span = max(box_extent(slices[main]))
        for i in np.flatnonzero(keep & (mass < 0.15 * mass[main])):
            if gap(slices[i], slices[main]) > 0.3 * span:
                keep[i] = False
        mask, kept_mass = np.concatenate([[False], keep])[labels], float(mass[keep].sum())
    ys, xs = bounds(mask)
    side = max(ys.stop - ys.start, xs.stop - xs.start)
    if kept_mass < 3.0 or side < 3 or side < 0.015 * image_side:
        raise NoDigitError("no digit found: only specks of ink")
    ys = slice(max(0, ys.start - 2), ys.stop + 2)
    xs = slice(max(0, xs.start - 2), xs.stop + 2)
    crop = ink[ys, xs] * grow(mask[ys, xs], 2)
    return crop[bounds(crop > 0)]


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
    ys, xs = bounds(work > 0)
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
    ys, xs = bounds(ink > 0.25 * peak)
    crop = ink[max(0, ys.start - 2):ys.stop + 2, max(0, xs.start - 2):xs.stop + 2]
    factor = max(crop.shape) // STROKE_SIDE
    h, w = crop.shape[0] // max(1, factor) * factor, crop.shape[1] // max(1, factor) * factor
    if factor < 2 or min(h, w) == 0:
        return crop, 1
    blocks = Image.fromarray(np.ascontiguousarray(crop[:h, :w]), "F").reduce(factor)
    return np.asarray(blocks), factor


def digit_crop(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The digit alone (specks dropped, 2 px fringe kept) and how many ink-map pixels each of
    its pixels spans (block-averaged when large)."""
    rough, factor = _rough_crop(ink)
    return _keep_digit(rough, max(ink.shape) // factor), factor


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
