"""digitrec.preprocess.line: a line of ink as the sequence reader sees it."""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.preprocess import NoDigitError
from digitrec.preprocess.line import BAND, HEIGHT, MARGIN_X, MAX_WIDTH, line_image


def _bars(width: int = 300, height: int = 120) -> np.ndarray:
    """An ink map with two vertical bars: columns 50-59 and 200-219, rows 30-89."""
    ink = np.zeros((height, width), np.float32)
    ink[30:90, 50:60] = 1.0
    ink[30:90, 200:220] = 0.8
    return ink


def test_the_ink_fills_the_band_and_the_width_keeps_the_aspect():
    line = line_image(_bars())
    assert line.pixels.shape[0] == HEIGHT and line.pixels.dtype == np.uint8
    assert line.pixels.shape[1] % 4 == 0
    top = (HEIGHT - BAND) // 2
    rows = np.flatnonzero(line.pixels.max(axis=1) > 0)
    assert rows[0] == top and rows[-1] == top + BAND - 1
    cols = np.flatnonzero(line.pixels.max(axis=0) > 0)
    assert cols[0] == MARGIN_X
    assert cols[-1] - cols[0] + 1 == pytest.approx(170 * BAND / 60, abs=1)  # aspect kept
    assert line.pixels.max() == 255  # the darkest ink is full ink
    assert (line.y0, line.y1, line.x0) == (30, 90, 50)


def test_columns_map_back_to_the_ink():
    line = line_image(_bars())
    cols = np.flatnonzero(line.pixels.max(axis=0) > 128)
    right_bar = cols[cols > line.pixels.shape[1] / 2]
    x0, x1 = line.to_ink_columns(right_bar[0], right_bar[-1] + 1)
    assert x0 == pytest.approx(200, abs=2) and x1 == pytest.approx(220, abs=2)


def test_a_very_long_line_is_squeezed_not_cut():
    ink = np.zeros((40, 5000), np.float32)
    ink[5:35, 10:4990:50] = 1.0
    line = line_image(ink)
    assert line.pixels.shape[1] <= MAX_WIDTH
    assert line.pixels[:, -MARGIN_X - 4:].max() > 0 or line.pixels[:, MAX_WIDTH // 2:].max() > 0


def test_a_blank_line_has_no_digit():
    with pytest.raises(NoDigitError):
        line_image(np.zeros((50, 50), np.float32))
    with pytest.raises(NoDigitError):
        line_image(np.full((50, 50), 0.1, np.float32))  # below the ink level
