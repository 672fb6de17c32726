"""The MNIST recipe for any input: decode safely (digitrec.io), find the ink (`ink`: alpha,
polarity, background, noise), then crop, normalise the stroke, fit a 20 px box and centre by
mass in 28x28 (`normalise`, with the box geometry in `geometry`, shared with `segment`, which
cuts a line of digits into single ones).

`preprocess(source)` is what every caller uses; `to_ink` and `normalize_digit` are its two
halves at full resolution, shared with segmentation (`preprocess` first tries a reduced
resolution, enough for a digit that fills a drawing canvas).
"""

from __future__ import annotations

import contextlib

import numpy as np

from digitrec.errors import ImageDecodeError, ImageTooLargeError, InputError, NoDigitError
from digitrec.io import WORK_SIDE, ImageSource, load_image
from digitrec.preprocess.ink import grey_mode, ink_and_scale, ink_from_planes, planes, to_ink
from digitrec.preprocess.normalise import (
    BOX,
    SIZE,
    STROKE_SIDE,
    digit_crop,
    normalize_digit,
    to_mnist,
)

PREVIEW_SIDE = 128  # preprocess looks first at PREVIEW_SIDE..2x PREVIEW_SIDE px on the long side

__all__ = ["BOX", "SIZE", "ImageDecodeError", "ImageSource", "ImageTooLargeError", "InputError",
           "NoDigitError", "ink_and_scale", "normalize_digit", "preprocess", "to_ink"]


def preprocess(source: ImageSource) -> np.ndarray:
    """Any image of one digit → the uint8 (28, 28) MNIST-style image the models read.

    A first look at 1/2 or less of the resolution (long side PREVIEW_SIDE..2x) is enough when
    the digit still spans STROKE_SIDE pixels there, as on a drawing canvas: everything after
    decoding then touches a quarter of the pixels or fewer. Smaller digits are read at full
    resolution."""
    image = grey_mode(load_image(source, max_side=WORK_SIDE))
    factor = max(image.size) // PREVIEW_SIDE
    if factor >= 2:
        with contextlib.suppress(NoDigitError):
            crop, scale = digit_crop(ink_from_planes(*planes(image, factor)))
            if max(crop.shape) * scale >= STROKE_SIDE:
                return to_mnist(crop)
    return to_mnist(digit_crop(ink_from_planes(*planes(image)))[0])
