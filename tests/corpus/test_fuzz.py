"""Fuzzing decode + preprocess + segment (issue 14), on a bounded budget: random bytes, mutated
valid PNG/JPEG/GIF/TIFF bytes and random arrays of odd shapes and dtypes. Only a DigitrecError
(or a valid 28x28 uint8 image, or digit segments) may come out. A crash found here is fixed
and its input added to scripts/make_corpus.py."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from digitrec.config import read
from digitrec.errors import DigitrecError
from digitrec.io import load_image
from digitrec.preprocess import preprocess
from digitrec.preprocess.segment import segment_digits

EXAMPLES = read().fuzz_examples  # per test ($DIGITREC_FUZZ_EXAMPLES); ~5 s in all
BUDGET = settings(max_examples=EXAMPLES, deadline=None, print_blob=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seeds() -> list[bytes]:
    """Small valid images of a digit pair in several formats: the bytes that get mutated."""
    image = Image.new("L", (48, 32), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(6, 6), (18, 6), (10, 26)], fill=0, width=3)
    draw.ellipse([(26, 6), (42, 26)], outline=0, width=3)
    out = []
    for fmt, mode in (("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "L"), ("GIF", "P"),
                      ("TIFF", "I;16"), ("WEBP", "RGB")):
        buffer = io.BytesIO()
        converted = image.convert(mode) if mode != "I;16" else Image.fromarray(
            np.asarray(image).astype(np.uint16) * 257)
        converted.save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed image with some bytes overwritten, inserted or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if action == "set":
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif at > 0:
            del data[at:]
        if not data:
            break
    return bytes(data)


def check_preprocess(source: object) -> None:
    """preprocess(source) is a 28x28 uint8 image or raises a DigitrecError."""
    try:
        image = preprocess(source)
    except DigitrecError as exc:
        assert str(exc)
        return
    assert image.shape == (28, 28) and image.dtype == np.uint8


def check_segment(source: object) -> None:
    """segment_digits(source) gives 28x28 digits or raises a DigitrecError."""
    try:
        segments = segment_digits(source)
    except DigitrecError:
        return
    assert segments and all(s.image28.shape == (28, 28) for s in segments)


@BUDGET
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    """Arbitrary bytes: decoded or refused, never a crash."""
    try:
        load_image(data)
    except DigitrecError:
        pass
    check_preprocess(data)


@BUDGET
@given(mutated())
def test_mutated_images(data: bytes) -> None:
    """Valid images with bytes changed, added or cut: read, or refused with a DigitrecError."""
    check_preprocess(data)
    check_segment(data)


DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64,
                          np.uint64, np.float16, np.float32, np.float64, np.bool_,
                          np.complex64])


@BUDGET
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=24)))
def test_random_arrays(array: np.ndarray) -> None:
    """Arrays of any dtype, shape and values (NaN, inf, negatives): never a crash."""
    check_preprocess(array)
    check_segment(array)


@BUDGET
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["1", "L", "LA", "P", "I;16",
                                                                    "I", "F", "RGBA", "CMYK"]),
       st.integers(0, 2**32 - 1))
def test_random_pil_images(width: int, height: int, mode: str, seed: int) -> None:
    """Random-noise PIL images of every mode and odd sizes (strips, 1 px): never a crash."""
    rng = np.random.default_rng(seed)
    if mode in ("I;16", "I", "F"):
        values = rng.integers(0, 65536, (height, width))
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        image = Image.fromarray(values.astype(dtype))
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        pixels = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if bands == 1 else pixels[..., :3]).convert(mode)
    check_preprocess(image)
    check_segment(image)


def test_crashes_found_by_fuzzing_stay_fixed() -> None:
    """Inputs that crashed once (also corpus cases): ink only in the edge column that block
    averaging drops made _keep_digit take the argmax of nothing (ValueError → 500)."""
    from digitrec.preprocess import normalize_digit
    from digitrec.preprocess.normalise import STROKE_SIDE

    ink = np.zeros((2 * STROKE_SIDE + 1, 3), np.float32)
    ink[[0, -1], 2] = 1.0
    grey = (255 - ink * 255).astype(np.uint8)
    for call, source in ((normalize_digit, ink), (preprocess, grey), (segment_digits, grey)):
        try:
            call(source)
        except DigitrecError:
            pass
