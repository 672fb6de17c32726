"""digitrec.data.lines: synthetic lines of MNIST digits for the sequence reader."""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.data.lines import on_paper, synth_line


@pytest.fixture(scope="module")
def digits(mnist):
    images, labels = mnist.split("val")
    return images[:500], labels[:500]


def test_lines_are_seeded_ink_maps_of_1_to_12_digits(digits):
    images, labels = digits
    first = [synth_line(images, labels, np.random.default_rng(s)) for s in range(40)]
    again = [synth_line(images, labels, np.random.default_rng(s)) for s in range(40)]
    for (ink, label), (ink2, label2) in zip(first, again, strict=True):
        assert label == label2 and np.array_equal(ink, ink2)
        assert 1 <= len(label) <= 12 and label.isdigit()
        assert ink.dtype == np.float32 and 0.0 <= ink.min() and ink.max() <= 1.0
        assert ink.max() > 0.5  # there is ink
        assert ink.shape[1] > ink.shape[0] * 0.3
    assert len({label for _, label in first}) > 30


def test_a_longer_number_makes_a_wider_line(digits):
    images, labels = digits
    rng = np.random.default_rng(3)
    lines = [synth_line(images, labels, rng) for _ in range(200)]
    short = [ink.shape[1] / ink.shape[0] for ink, label in lines if len(label) <= 2]
    long = [ink.shape[1] / ink.shape[0] for ink, label in lines if len(label) >= 8]
    assert np.median(long) > 2 * np.median(short)


def test_on_paper_is_grey_ink_on_lighter_paper(digits):
    images, labels = digits
    rng = np.random.default_rng(5)
    ink, _ = synth_line(images, labels, rng)
    page = on_paper(ink, rng)
    assert page.dtype == np.uint8 and page.shape == ink.shape
    assert page[ink > 0.9].mean() < page[ink == 0].mean()
