"""digitrec.preprocess: real-world inputs keep MNIST accuracy, bad inputs get clear errors."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageOps

from digitrec.data.synth import CONDITIONS, thick, thin
from digitrec.errors import ImageDecodeError, ImageTooLargeError, InputError, NoDigitError
from digitrec.io import MAX_PIXELS, WORK_SIDE, load_image
from digitrec.preprocess import normalize_digit, preprocess, to_ink

SAMPLE = 500  # MNIST test digits per condition, as the issue asks


@pytest.fixture(scope="module")
def recognizer():
    """The bundled ensemble."""
    from digitrec.recognizer import Recognizer
    return Recognizer.load()


@pytest.fixture(scope="module")
def sample(mnist) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random sample of MNIST test digits."""
    images, labels = mnist.split("test")
    idx = np.random.default_rng(0).choice(len(images), SAMPLE, replace=False)
    return images[idx], labels[idx]


def _png(pixels: np.ndarray | Image.Image) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _huge_png(side: int) -> bytes:
    """A valid, all-black 1-bit side x side PNG built row by row (a few hundred KB)."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_condition_keeps_accuracy(condition, recognizer, sample):
    images, labels = sample
    rng = np.random.default_rng(1)
    sources = [CONDITIONS[condition](img, rng) for img in images]
    predictions = recognizer.predict_many(sources)
    accuracy = float(np.mean([p.best_guess == t for p, t in zip(predictions, labels, strict=True)]))
    assert accuracy >= 0.98, f"{condition}: {accuracy:.1%} < 98%"
    if condition == "mnist":  # MNIST itself must pass through (almost) unchanged
        assert accuracy >= 0.995
        out = np.stack([p.image28 for p in predictions])
        diff = np.abs(out.astype(int) - images.astype(int)).mean(axis=(1, 2))
        assert np.median(diff) < 0.5 and np.mean(diff < 2) > 0.9


# ----------------------------------------------------------------------------- the recipe


def test_output_is_mnist_shaped(sample):
    out = preprocess(CONDITIONS["large"](sample[0][0], np.random.default_rng(0)))
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20  # long side fits 20 px
    assert out.max() == 255 and out[0].max() == 0 and out[:, 0].max() == 0  # light on black
    total = out.sum(dtype=float)
    centre = ((out.sum(axis=1) * np.arange(28)).sum() / total,
              (out.sum(axis=0) * np.arange(28)).sum() / total)
    assert np.allclose(centre, (14, 14), atol=0.5)


def test_to_ink_is_float_in_unit_range(sample):
    ink = to_ink(CONDITIONS["paper_200"](sample[0][0], np.random.default_rng(0)))
    assert ink.dtype == np.float32 and ink.shape == (200, 200)
    assert ink.min() == 0.0 and ink.max() == 1.0
    assert (ink == 0).mean() > 0.8, "paper texture must be background, not ink"


@pytest.mark.parametrize("condition", ["canvas_png", "white_on_transparent"])
def test_transparent_canvases_read_from_alpha(condition, sample):
    img = sample[0][0]
    reference = preprocess(255 - img).astype(float)
    out = preprocess(CONDITIONS[condition](img, np.random.default_rng(0))).astype(float)
    assert np.corrcoef(reference.ravel(), out.ravel())[0, 1] > 0.8


def test_polarity_does_not_matter(sample):
    img = sample[0][3]
    light_on_dark, dark_on_light = preprocess(img), preprocess(255 - img)
    assert np.abs(light_on_dark.astype(int) - dark_on_light.astype(int)).max() <= 2


def test_stroke_width_is_normalised(sample):
    rng = np.random.default_rng(0)
    img = sample[0][1]
    masses = [float(preprocess(render(img, rng)).sum()) for render in (thin, thick)]
    raw = [(255 - np.asarray(load_image(render(img, rng)), float)).sum()
           for render in (thin, thick)]
    assert raw[1] / raw[0] > 4, "the test renders must really differ in stroke width"
    assert masses[1] / masses[0] < 2.0


def test_exif_orientation_is_honoured():
    upright = np.full((60, 30), 255, np.uint8)
    upright[5:55, 12:18] = 0  # a vertical bar, taller than wide
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # lying down
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif, quality=95)
    assert load_image(buffer.getvalue()).size == (30, 60)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_common_formats_decode(fmt, sample):
    page = Image.fromarray(255 - sample[0][2]).resize((84, 84))
    buffer = io.BytesIO()
    page.save(buffer, fmt)
    out = preprocess(buffer.getvalue())
    assert out.shape == (28, 28) and out.max() == 255


def test_arrays_of_many_kinds(sample):
    img = sample[0][4]
    reference = preprocess(img)
    for variant in (img.astype(np.float32) / 255, img[..., None],
                    np.repeat(img[..., None], 3, axis=2),
                    np.dstack([np.zeros_like(img)] * 3 + [img])):  # black strokes, alpha
        assert np.abs(preprocess(variant).astype(int) - reference).mean() < 3


def test_large_images_are_reduced_before_the_heavy_work(recognizer, sample):
    images, labels = sample
    page = _png(Image.fromarray(255 - images[5]).resize((2400, 2400), Image.BICUBIC))
    assert max(to_ink(page).shape) <= WORK_SIDE
    assert recognizer.predict(page).best_guess == labels[5]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("source", [
    np.zeros((28, 28), np.uint8),
    np.full((28, 28), 255, np.uint8),
    np.full((280, 280), 0.5, np.float32),
    np.array([[255]], np.uint8),
    _png(np.zeros((300, 300), np.uint8)),
    _png(np.full((300, 300), 255, np.uint8)),
    _png(np.array([[0]], np.uint8)),
    _png(Image.new("RGBA", (280, 280), (0, 0, 0, 0))),
], ids=["blank", "white", "grey", "1x1", "black-png", "white-png", "1x1-png", "transparent"])
def test_no_digit(source):
    with pytest.raises(NoDigitError, match="no digit found"):
        preprocess(source)


def test_near_blank_specks_are_no_digit():
    rng = np.random.default_rng(0)
    page = np.full((280, 280), 255, np.uint8)
    page[rng.integers(0, 280, 6), rng.integers(0, 280, 6)] = 0
    with pytest.raises(NoDigitError):
        preprocess(page)


def test_huge_png_is_refused_from_its_header(monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("must be refused without decoding the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    data = _huge_png(12000)
    assert len(data) < 2_000_000
    with pytest.raises(ImageTooLargeError, match="limit is 40 MP"):
        preprocess(data)


def test_huge_array_is_refused():
    with pytest.raises(ImageTooLargeError):
        preprocess(np.zeros((1, MAX_PIXELS + 1), np.uint8))


@pytest.mark.parametrize("data", [
    b"hello",
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    b"",
    b"\x89PNG\r\n\x1a\n",
], ids=["text", "pdf", "empty", "png-signature-only"])
def test_not_an_image(data):
    with pytest.raises(ImageDecodeError):
        preprocess(data)


def test_truncated_png(sample):
    data = _png(Image.fromarray(255 - sample[0][0]).resize((200, 200)))
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        preprocess(data[: len(data) // 2])


@pytest.mark.parametrize("source", [
    np.full((28, 28), np.nan, np.float32),
    np.full((28, 28), np.inf, np.float32),
    np.zeros((2, 28, 28, 1), np.uint8),
    np.zeros((28, 28, 5), np.uint8),
    np.zeros((0, 28), np.uint8),
    np.full((28, 28), -3.0),
    np.zeros((28, 28), np.complex64),
    12345,
], ids=["nan", "inf", "4-d", "5-channels", "empty", "negative", "complex", "int"])
def test_bad_arrays_and_types(source):
    with pytest.raises(InputError):
        preprocess(source)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot open"):
        preprocess(tmp_path / "nope.png")


def test_normalize_digit_rejects_bad_ink():
    with pytest.raises(InputError):
        normalize_digit(np.zeros((3, 3, 3), np.float32))
    with pytest.raises(NoDigitError):
        normalize_digit(np.zeros((50, 50), np.float32))


_shapes = st.tuples(st.integers(1, 300), st.integers(1, 300)).flatmap(
    lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 3), (*hw, 4)]))
_arrays = st.one_of(
    hnp.arrays(np.uint8, _shapes),
    hnp.arrays(np.float32, _shapes, elements=st.floats(0, 1, width=32)),
    hnp.arrays(np.float64, _shapes),  # anything, NaN and inf included
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.data_too_large])
@given(_arrays)
def test_random_arrays_never_crash(array):
    try:
        out = preprocess(array)
    except InputError:
        return
    assert out.dtype == np.uint8 and out.shape == (28, 28)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 4096])
@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 1.0])
def test_quantile_matches_numpy(n, q):
    from digitrec.preprocess.ink import _quantile
    values = np.random.default_rng(n).random(n).astype(np.float32)
    assert _quantile(values, q) == pytest.approx(float(np.quantile(values, q)), abs=1e-6)


# ----------------------------------------------------------------------------- speed paths


@pytest.fixture
def looks(monkeypatch) -> list:
    """The reduction factor of every pair of planes preprocess builds (None: full resolution)."""
    import digitrec.preprocess as module
    factors: list = []
    planes = module.planes

    def spy(image, factor=None):
        factors.append(factor)
        return planes(image, factor)

    monkeypatch.setattr(module, "planes", spy)
    monkeypatch.setattr(module.ink, "planes", spy)
    return factors


def test_canvas_digit_is_read_at_half_resolution(looks, sample):
    images, labels = sample
    png = CONDITIONS["canvas_png"](images[0], np.random.default_rng(0))  # 140-230 px digit
    preprocess(png)
    assert looks == [2]


def test_small_digit_on_a_canvas_is_read_at_full_resolution(looks, sample):
    images, labels = sample
    page = CONDITIONS["corner"](images[0], np.random.default_rng(0))  # 70 px: 35 at half
    assert np.array_equal(preprocess(page), normalize_digit(to_ink(page)))
    assert looks == [2, None, None]  # the first look, then preprocess and to_ink in full


def test_small_images_are_read_at_full_resolution_only(looks, sample):
    images, labels = sample
    preprocess(thick(images[0], np.random.default_rng(0)))  # 112 px
    assert looks == [None]


@pytest.mark.parametrize("condition, uneven", [("rotated", False), ("paper_200", False),
                                               ("shadow", True)])
def test_shading_is_estimated_only_under_uneven_light(condition, uneven, sample):
    from digitrec.preprocess.ink import _ink_signal, _shading
    from digitrec.preprocess.ink import grey_mode as _grey_mode
    from digitrec.preprocess.ink import planes as _planes
    images, labels = sample
    rng = np.random.default_rng(0)
    for img in images[:10]:
        grey, _ = _planes(_grey_mode(load_image(CONDITIONS[condition](img, rng))))
        assert isinstance(_shading(_ink_signal(grey)[0]), np.ndarray) == uneven


def test_resize_is_pillows_float_resampling():
    from digitrec.preprocess.geometry import resize as _resize

    def pillow(a, width, height):
        image = Image.fromarray(a, "F")
        if width <= a.shape[1] and height <= a.shape[0]:
            return np.clip(np.asarray(image.resize((width, height), Image.LANCZOS,
                                                   reducing_gap=2.0)), 0, 1)
        return np.clip(np.asarray(image.resize((width, height), Image.BICUBIC)), 0, 1)

    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 260, 2)
        side = int(rng.choice([20, 28, 64]))  # up (bicubic) and down (Lanczos, box-reduced)
        width, height = max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w)))
        a = (rng.random((h, w)) * (rng.random((h, w)) < 0.5)).astype(np.float32)
        ours, theirs = _resize(a, width, height), pillow(a, width, height)
        assert ours.shape == theirs.shape == (height, width)
        assert np.abs(ours - theirs).max() <= 1e-6


def test_grow_is_a_square_dilation():
    from scipy import ndimage as ndi

    from digitrec.preprocess.geometry import grow as _grow
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(1, 50, 2)
        mask = rng.random((h, w)) < rng.random() * 0.3
        r = int(rng.integers(1, 4))
        assert np.array_equal(_grow(mask, r), ndi.maximum_filter(mask, 2 * r + 1, mode="constant"))


@pytest.mark.parametrize("alpha", [255, 254, 0])
def test_opaque_alpha_is_dropped_and_any_transparency_kept(alpha):
    from digitrec.preprocess.ink import grey_mode as _grey_mode
    for mode, colour in (("RGBA", (10, 20, 30, 255)), ("LA", (10, 255))):
        image = Image.new(mode, (40, 30), colour)
        image.putpixel((39, 29), (*colour[:-1], alpha))
        assert _grey_mode(image).mode == ("L" if alpha == 255 else "LA")


# ----------------------------------------------------------------------------- PNG decoding


def _noise_png(mode: str, **save) -> bytes:
    """A PNG of random pixels in `mode` (noise makes every PNG filter type appear)."""
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(1).integers(0, 256, (37, 53, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("level", [1, 9])
def test_plain_pngs_decode_by_libspng_to_pillows_pixels(mode, level):
    from digitrec.io.decode import _spng_decode
    data = _noise_png(mode, compress_level=level)
    fast = _spng_decode(Image.open(io.BytesIO(data)), data)
    assert fast is not None and fast.mode == mode
    assert np.array_equal(np.asarray(fast), np.asarray(Image.open(io.BytesIO(data))))
    assert np.array_equal(np.asarray(load_image(data)), np.asarray(fast))


def _other_pngs() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6
    grey = np.random.default_rng(2).integers(0, 256, (20, 30), dtype=np.uint8)
    return {"grey+alpha": _noise_png("LA"), "exif": _noise_png("L", exif=exif),
            "transparency": _noise_png("RGB", transparency=(0, 0, 0)),
            "palette": _png(Image.fromarray(grey).convert("P")),
            "16-bit": _png(Image.fromarray(grey.astype(np.uint16) * 257)),
            "1-bit": _png(Image.fromarray(grey > 127))}


@pytest.mark.parametrize("kind", ["grey+alpha", "exif", "transparency", "palette", "16-bit",
                                  "1-bit"])
def test_other_pngs_are_left_to_pillow(kind):
    from digitrec.io.decode import _spng_decode
    data = _other_pngs()[kind]
    assert _spng_decode(Image.open(io.BytesIO(data)), data) is None
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))  # turned, for "exif"
    assert np.array_equal(np.asarray(load_image(data)), np.asarray(upright))


def test_pillow_decodes_what_libspng_refuses(monkeypatch, sample):
    import pyspng
    data = _png(Image.fromarray(255 - sample[0][3]).resize((120, 120)))
    expected = preprocess(data)

    def refuse(*args, **kwargs):
        raise RuntimeError("pyspng: refused")

    monkeypatch.setattr(pyspng, "load", refuse)
    assert np.array_equal(preprocess(data), expected)


def test_a_truncated_file_opened_lazily_is_a_decode_error():
    """Image.open(truncated) defers the decoding: its error is still an ImageDecodeError."""
    raw = (Path(__file__).resolve().parents[2] / "examples" / "seven.png").read_bytes()
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        preprocess(Image.open(io.BytesIO(raw[:len(raw) // 2])))


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_thin_strips_of_wide_modes_are_no_digit_not_a_crash(mode):
    noise = np.random.default_rng(0).random((2, 3000)) * 1000
    image = Image.fromarray(noise.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
    with pytest.raises(NoDigitError):
        preprocess(image)
