"""The shortcuts of preprocessing give the very bits of the plain computations they replace
(benchmarks/preprocess_speed.py --check compares whole outputs with an older copy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from digitrec.errors import NoDigitError
from digitrec.preprocess.geometry import bounds, box_reduce
from digitrec.preprocess.ink import (
    _more_dark,
    _noise_sigma,
    _quantile,
    _sample,
    grey_mode,
    ink_from_planes,
    planes,
)
from digitrec.preprocess.normalise import (
    _distance_below,
    _keep_digit,
    _lighter_than,
    _pad,
    digit_crop,
)


def _float_image(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    """Random float32 pixels: plain, sparse, tiny (subnormal sums), or with -0.0 in them."""
    a = rng.random((h, w)).astype(np.float32)
    if kind == 1:
        a *= rng.random((h, w)) < 0.3
    elif kind == 2:
        a = ((a - 0.5) * np.float32(1e-37)).astype(np.float32)
    elif kind == 3:
        a = np.where(rng.random((h, w)) < 0.5, np.float32(-0.0), a * 1e5).astype(np.float32)
    return a


def test_box_reduce_is_pillows_float_reduce():
    rng = np.random.default_rng(0)
    for i in range(3000):
        h, w = (int(x) for x in rng.integers(1, 40, 2))
        fx, fy = (int(x) for x in rng.integers(1, 6, 2))
        if fx == fy == 1:
            continue
        a = _float_image(rng, h, w, i % 4)
        padded = np.zeros((h + 3, w + 5), np.float32)
        padded[1:1 + h, 2:2 + w] = a
        pillow = np.asarray(Image.fromarray(a, "F").reduce((fx, fy)))
        for view in (a, padded[1:1 + h, 2:2 + w]):  # contiguous or not
            ours = box_reduce(view, fx, fy)
            assert ours.dtype == np.float32 and ours.tobytes() == pillow.tobytes(), (h, w, fx, fy)


def test_rgba_with_transparency_becomes_pillows_la():
    rng = np.random.default_rng(1)
    for _ in range(200):
        h, w = (int(x) for x in rng.integers(1, 60, 2))
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[..., 3][rng.random((h, w)) < 0.5] = 0
        image = Image.fromarray(rgba, "RGBA")
        ours = grey_mode(image)
        assert ours.mode == "LA" and ours.tobytes() == image.convert("LA").tobytes()


@pytest.mark.parametrize("grey", [0, 255, 90, None])
def test_reduced_la_planes_are_pillows(grey):
    """Black and white strokes take the shortcut, any other grey Pillow's premultiplied path."""
    rng = np.random.default_rng(2)
    for _ in range(300):
        h, w = (int(x) for x in rng.integers(1, 90, 2))
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
        alpha[rng.random((h, w)) < 0.4] = 0
        alpha[rng.random((h, w)) < 0.2] = 255
        g = (rng.integers(0, 256, (h, w), dtype=np.uint8) if grey is None
             else np.full((h, w), grey, np.uint8))
        image = Image.fromarray(np.stack([g, alpha], axis=-1), "LA")
        factor = int(rng.integers(2, 6))
        reference = np.asarray(image.reduce(factor))
        ours_grey, ours_alpha = planes(image, factor)
        unit = np.float32(1 / 255)
        assert np.array_equal(ours_grey, np.multiply(reference[..., 0], unit, dtype=np.float32))
        assert np.array_equal(ours_alpha, np.multiply(reference[..., 1], unit, dtype=np.float32))


def test_bounds_of_any_mask():
    rng = np.random.default_rng(3)
    for _ in range(3000):
        h, w = (int(x) for x in rng.integers(1, 50, 2))
        mask = rng.random((h, w)) < rng.random() * 0.05
        for m in (mask, np.asfortranarray(mask), mask[:, ::-1]):
            if not m.any():
                with pytest.raises(IndexError):
                    bounds(m)
                continue
            rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            assert bounds(m) == (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))


def test_polarity_from_the_extremes_or_the_sums():
    rng = np.random.default_rng(4)
    for i in range(3000):
        sample = rng.random((int(rng.integers(1, 40)), 30)).astype(np.float32)
        if i % 3 == 0:  # one-sided: everything at or above (or below) the background
            sample = np.where(rng.random(sample.shape) < 0.8, np.float32(0.5), sample)
            sample = np.maximum(sample, 0.5) if i % 2 else np.minimum(sample, 0.5)
        background = float(rng.choice([0.5, _quantile(sample, 0.5), rng.random()]))
        t = float(rng.choice([0.02, rng.random() * 0.3]))
        dev = sample - background
        dark = float(np.clip(-dev - t, 0, None).sum())
        light = float(np.clip(dev - t, 0, None).sum())
        assert _more_dark(sample, background, t) == (dark > light)


def test_noise_sigma_of_flat_and_noisy_images():
    rng = np.random.default_rng(5)
    for i in range(500):
        h, w = (int(x) for x in rng.integers(1, 150, 2))
        a = rng.random((h, w)).astype(np.float32)
        if i % 2:  # mostly flat
            a[rng.random((h, w)) < rng.random()] = 1.0
        s = _sample(a, 4096)
        expected = (0.0 if s.shape[1] < 2 else
                    _quantile(np.abs(np.diff(s, axis=1)), 0.5) / (0.6745 * math.sqrt(2)))
        assert _noise_sigma(a) == expected


def test_one_coloured_strokes_read_from_alpha():
    """A canvas whose colour is one grey (black here) is read from its alpha channel, as the
    standard-deviation test of the opaque pixels decides."""
    rng = np.random.default_rng(6)
    alpha = np.zeros((120, 120), np.float32)
    alpha[30:90, 50:60] = rng.random((60, 10)).astype(np.float32) * 0.5 + 0.5
    for grey_value in (0.0, 0.4, 1.0):
        grey = np.full(alpha.shape, grey_value, np.float32)
        ours = ink_from_planes(grey, alpha)
        noisy_grey = grey.copy()  # a spread under 0.1: the same reading, by the plain test
        noisy_grey[0, 0] = grey_value + (0.01 if grey_value < 1 else -0.01)
        assert np.array_equal(ours, ink_from_planes(noisy_grey, alpha))


def test_mass_bound_agrees_with_the_sum():
    rng = np.random.default_rng(7)
    for _ in range(3000):
        h, w = (int(x) for x in rng.integers(1, 30, 2))
        ink = (rng.random((h, w)) * rng.choice([0.02, 0.2, 1.0])).astype(np.float32)
        floor = np.float32(0.25 * float(ink.max()))
        mask = ink > floor
        least = float(rng.choice([0.5, 3.0, 10.0]))
        assert _lighter_than(ink, mask, floor, least) == (float(ink.sum(where=mask)) < least)


def test_digit_crop_with_and_without_the_callers_mask():
    """The clear ink _rough_crop hands on is the mask _keep_digit would compute itself."""
    rng = np.random.default_rng(8)
    for _ in range(300):
        h, w = (int(x) for x in rng.integers(8, 120, 2))
        ink = ndi.gaussian_filter((rng.random((h, w)) < 0.02).astype(np.float32), 1.5)
        ink = np.clip(ink * 8, 0, 1).astype(np.float32)
        try:
            crop, factor = digit_crop(ink)
        except NoDigitError:
            continue
        if factor == 1:
            peak = float(ink.max())
            rows, cols = bounds(ink > 0.25 * peak)
            rough = ink[max(0, rows.start - 2):rows.stop + 2, max(0, cols.start - 2):cols.stop + 2]
            assert np.array_equal(crop, _keep_digit(rough, max(ink.shape)))


def test_distance_below_is_scipys_where_it_counts():
    rng = np.random.default_rng(9)
    for i in range(1000):
        h, w = (int(x) for x in rng.integers(1, 60, 2))
        delta = float(rng.uniform(0.01, 4.6))
        mask = rng.random((h, w)) < rng.choice([0.01, 0.05, 0.3])
        if i % 3 == 0:
            mask = ndi.binary_dilation(rng.random((h, w)) < 0.03, iterations=2)
        mask[h // 2, w // 2] |= not mask.any()
        mask = _pad(mask, math.ceil(delta) + 1)
        scipy = np.clip(delta + 1.0 - ndi.distance_transform_edt(~mask), 0.0, 1.0)
        ours = np.clip(delta + 1.0 - _distance_below(mask, delta + 1.0), 0.0, 1.0)
        assert ours.tobytes() == scipy.tobytes()
    far = _pad(np.ones((3, 3), bool), 12)  # beyond the small-integer range: scipy's own
    assert np.array_equal(_distance_below(far, 12.0), ndi.distance_transform_edt(~far))
