"""A line of handwriting as the sequence reader sees it: the ink map cropped to its ink,
scaled to a fixed height (aspect kept) and padded, as uint8 (0 = paper, 255 = ink).

`line_image(ink)` is shared by training (synthetic lines) and reading (`Recognizer.read_number`),
so both see the same thing; `LineImage.to_ink_columns` maps the reader's columns back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from digitrec.errors import NoDigitError

HEIGHT = 32  # rows of the reader's input
BAND = 28  # rows the ink spans; the rest is margin
MARGIN_X = 4  # columns of paper left and right of the ink
MAX_WIDTH = 640  # columns at most (about 20 digits at BAND high)
INK_LEVEL = 0.15  # the ink's box is taken over pixels above this level
STRIDE = 2  # input columns per output frame of the reader (models.sequence)


@dataclass(frozen=True)
class LineImage:
    """The reader's input and where it came from: `pixels` (HEIGHT, W) uint8; column c of it
    is column `x0 + (c - MARGIN_X) / scale` of the ink map; `y0`, `y1` bound the ink's rows."""

    pixels: np.ndarray
    x0: int
    y0: int
    y1: int
    scale: float

    def to_ink_columns(self, c0: float, c1: float) -> tuple[float, float]:
        """Columns [c0, c1) of `pixels` as columns of the ink map."""
        return (self.x0 + (c0 - MARGIN_X) / self.scale, self.x0 + (c1 - MARGIN_X) / self.scale)


def line_image(ink: np.ndarray) -> LineImage:
    """The ink map (float (H, W), 1 = ink) as the reader's input; NoDigitError when blank."""
    strong = ink > INK_LEVEL
    rows = np.flatnonzero(strong.any(axis=1))
    cols = np.flatnonzero(strong.any(axis=0))
    if rows.size == 0:
        raise NoDigitError("no digit found: the image is blank")
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.ascontiguousarray(ink[y0:y1, x0:x1], np.float32)
    scale = BAND / crop.shape[0]
    width = int(round(crop.shape[1] * scale))
    if width > MAX_WIDTH - 2 * MARGIN_X:  # a very long line: squeezed rather than cut off
        width = MAX_WIDTH - 2 * MARGIN_X
    width = max(width, 1)
    resized = np.asarray(Image.fromarray(crop, "F").resize((width, BAND), Image.BOX))
    peak = float(resized.max())
    if peak > 0:
        resized = resized / peak
    total = width + 2 * MARGIN_X
    total += -total % 4
    pixels = np.zeros((HEIGHT, total), np.uint8)
    top = (HEIGHT - BAND) // 2
    pixels[top:top + BAND, MARGIN_X:MARGIN_X + width] = np.rint(
        np.clip(resized, 0.0, 1.0) * 255).astype(np.uint8)
    return LineImage(pixels=pixels, x0=int(x0), y0=int(y0), y1=int(y1),
                     scale=width / crop.shape[1])
