"""A correction from an image and its right label: check the label, run the Recognizer to record
what the model saw and read, and build the row (not yet stored)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from digitrec.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    LabelError,
    LabelMismatchError,
    NoDigitError,
    UsageError,
)
from digitrec.feedback.models import MAX_LABEL, MODES, SOURCES, Correction

if TYPE_CHECKING:
    from digitrec.recognizer import Recognizer

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # the web app's upload limit (digitrec.web)
DIGITS = re.compile(r"[0-9]+", re.ASCII)


def check_label(label: object, mode: str | None = None) -> tuple[str, str]:
    """The label as a string of digits and the mode ("digit" for one digit, "number" for
    more, unless `mode` says); LabelError or UsageError when they cannot be used."""
    if isinstance(label, int) and not isinstance(label, bool) and label >= 0:
        label = str(label)
    if not isinstance(label, str) or not label.strip():
        raise LabelError("missing the correct label: a digit 0-9, or the digits of the number")
    label = label.strip()
    if not DIGITS.fullmatch(label):
        raise LabelError(f"the label {label[:20]!r} is not a digit 0-9 or a string of digits")
    if len(label) > MAX_LABEL:
        raise LabelError(f"the label has {len(label)} digits: at most {MAX_LABEL}")
    if mode is None or mode == "":
        mode = "digit" if len(label) == 1 else "number"
    if mode not in MODES:
        raise UsageError(f"mode {str(mode)[:20]!r} is not one of {', '.join(MODES)}")
    if mode == "digit" and len(label) != 1:
        raise LabelError(f"in digit mode the label is one digit 0-9, not {label!r}")
    return label, mode


def model_version(recognizer: Recognizer) -> str:
    """The SHA-256 of the recognizer's weights (computed once per recognizer)."""
    return recognizer.version


def capture(recognizer: Recognizer, image: bytes, label: object, mode: str | None = None,
            source: str = "api", max_bytes: int = MAX_IMAGE_BYTES) -> Correction:
    """A new Correction of `image` (bytes as received) with the right `label`: what the model
    saw (per digit in number mode) and read. InputError kinds when the image cannot be read,
    LabelError when the label cannot be used, LabelMismatchError when its digit count is not
    the number of digits found."""
    label, mode = check_label(label, mode)
    if source not in SOURCES:
        raise UsageError(f"source {str(source)[:20]!r} is not one of {', '.join(SOURCES)}")
    if not image:
        raise ImageDecodeError("the image is empty (0 bytes)")
    if len(image) > max_bytes:
        raise ImageTooLargeError(f"the image has {len(image)} bytes: at most {max_bytes}")
    if mode == "digit":
        readings = [recognizer.predict(image)]
    else:
        readings = recognizer.read_number(image).digits
        if not readings:
            raise NoDigitError("no digit found in the image")
        if len(readings) != len(label):
            raise LabelMismatchError(
                f"the label {label!r} has {len(label)} digit{'s' * (len(label) != 1)} but "
                f"{len(readings)} {'were' if len(readings) != 1 else 'was'} found in the "
                "image: draw the digits apart, or send each digit alone")
    images28 = np.stack([np.asarray(r.image28, dtype=np.uint8) for r in readings])
    return Correction(
        created=datetime.now(UTC), source=source, mode=mode, label=label,
        predicted="".join(str(r.best_guess) for r in readings),
        probabilities=[[round(float(p), 6) for p in r.probabilities] for r in readings],
        image=bytes(image), images28=images28.tobytes(), model_version=model_version(recognizer))


def images28_of(correction: Correction) -> np.ndarray:
    """The 28x28 images the model saw, (digits, 28, 28) uint8."""
    return np.frombuffer(correction.images28, dtype=np.uint8).reshape(-1, 28, 28)
