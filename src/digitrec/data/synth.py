"""Render MNIST digits the way real input arrives (photos, scans, canvas exports, odd sizes),
for the tests, the robustness benchmark and the web tests.

Every condition maps (28x28 uint8 MNIST digit, numpy Generator) to something
`digitrec.preprocess.load_image` accepts: encoded bytes, a PIL image or a numpy array.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

Rendered = bytes | np.ndarray | Image.Image
Condition = Callable[[np.ndarray, np.random.Generator], Rendered]


# ----------------------------------------------------------------------------- helpers


def _ink(img28: np.ndarray) -> np.ndarray:
    """MNIST uint8 → float ink in [0, 1]."""
    return np.asarray(img28, dtype=np.float32) / 255.0


def _resize(ink: np.ndarray, width: int, height: int) -> np.ndarray:
    """Smooth float resize (bicubic up, Lanczos down), clipped to [0, 1]."""
    up = width >= ink.shape[1]
    out = Image.fromarray(np.ascontiguousarray(ink, np.float32), "F").resize(
        (width, height), Image.BICUBIC if up else Image.LANCZOS)
    return np.clip(np.asarray(out), 0.0, 1.0)


def _crop(ink: np.ndarray) -> np.ndarray:
    """The ink's bounding box."""
    rows = np.flatnonzero(ink.max(axis=1) > 0)
    cols = np.flatnonzero(ink.max(axis=0) > 0)
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _scaled_crop(img28: np.ndarray, height: float) -> np.ndarray:
    """The digit's ink box resized so that its height is `height` pixels (aspect kept)."""
    crop = _crop(_ink(img28))
    scale = height / crop.shape[0]
    return _resize(crop, max(1, round(crop.shape[1] * scale)), max(1, round(height)))


def _place(ink: np.ndarray, shape: tuple[int, int], y: int, x: int) -> np.ndarray:
    """An empty (H, W) ink canvas with `ink` pasted at (y, x) (clipped at the edges)."""
    canvas = np.zeros(shape, np.float32)
    h, w = ink.shape
    y0, x0, y1, x1 = max(0, y), max(0, x), min(shape[0], y + h), min(shape[1], x + w)
    canvas[y0:y1, x0:x1] = ink[y0 - y:y1 - y, x0 - x:x1 - x]
    return canvas


def _on_paper(ink: np.ndarray, paper: float = 1.0, pen: float = 0.0) -> np.ndarray:
    """Dark ink on light paper as uint8 grey."""
    return np.rint((paper - ink * (paper - pen)) * 255).clip(0, 255).astype(np.uint8)


def _encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **options) -> bytes:
    """Encode pixels (uint8 array or PIL image) as image-file bytes."""
    if fmt == "PNG" and isinstance(pixels, np.ndarray):
        return _png(pixels)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    """A plain PNG of a uint8 grey (H, W) or RGBA (H, W, 4) array, written directly: no row
    filters and fast compression, several times quicker than Pillow's encoder."""
    height, width = pixels.shape[:2]
    colour = {2: 0, 3: 6}[pixels.ndim] if pixels.ndim == 2 or pixels.shape[2] == 4 else 2
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def _disk(radius: int) -> np.ndarray:
    """Boolean disk footprint."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


# ----------------------------------------------------------------------------- conditions


def mnist(img28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The MNIST digit itself (light on black, 28x28): preprocessing must leave it alone."""
    return np.array(img28, dtype=np.uint8)


def dark_on_white(img28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inverted polarity: black ink on white paper, 28x28."""
    return 255 - np.asarray(img28, dtype=np.uint8)


def paper_200(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 200x200 PNG: the digit field upscaled to 160 px on light-grey, slightly textured paper."""
    ink = _place(_resize(_ink(img28), 160, 160), (200, 200), *rng.integers(0, 41, 2))
    paper = rng.uniform(0.78, 0.92)
    texture = _resize(rng.normal(0, 0.02, (100, 100)).astype(np.float32) + 0.5, 200, 200) - 0.5
    grey = np.clip(paper + texture - ink * (paper - rng.uniform(0.05, 0.3)), 0, 1)
    return _encode(np.rint(grey * 255).astype(np.uint8))


def corner(img28: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 70 px digit tucked into a random corner of a white 280x280 canvas (a PIL image)."""
    digit = _scaled_crop(img28, 70)
    h, w = digit.shape
    margin = int(rng.integers(2, 10))
    y = margin if rng.random() < 0.5 else 280 - h - margin
    x = margin if rng.random() < 0.5 else 280 - w - margin
    return Image.fromarray(_on_paper(_place(digit, (280, 280), y, x)), "L")


def small(img28: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An 8 px tall digit somewhere on a 64x64 white RGB image."""
    digit = _scaled_crop(img28, 8)
    h, w = digit.shape
    ink = _place(digit, (64, 64), int(rng.integers(0, 64 - h)), int(rng.integers(0, 64 - w)))
    return Image.fromarray(_on_paper(ink), "L").convert("RGB")


def large(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit filling a 400x400 PNG (long side 380 px)."""
    crop = _crop(_ink(img28))
    scale = 380 / max(crop.shape)
    h, w = (max(1, round(side * scale)) for side in crop.shape)
    digit = _resize(crop, w, h)
    h, w = digit.shape
    ink = _place(digit, (400, 400), (400 - h) // 2, (400 - w) // 2)
    return _encode(_on_paper(ink))


def _fat_marker(img28: np.ndarray, radius: int) -> np.ndarray:
    """The 4x upscaled digit (112 px) dilated by a disk: a fat marker, dark on white."""
    ink = _resize(_ink(img28), 112, 112)
    return _on_paper(ndi.grey_dilation(ink, footprint=_disk(radius)))


def thick(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A fat marker: the 4x upscaled digit dilated by a 4 px disk (strokes ~1.8x wider)."""
    return _encode(_fat_marker(img28, 4))


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide, connectivity-preserving skeleton (Zhang-Suen thinning, vectorised)."""
    img = np.pad(mask.astype(np.uint8), 1)
    h, w = mask.shape
    offsets = ((0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0), (0, 0))  # P2..P9
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = [img[dy:dy + h, dx:dx + w] for dy, dx in offsets]
            count = sum(q.astype(np.int8) for q in p)
            turns = sum((p[k] == 0) & (p[(k + 1) % 8] == 1) for k in range(8))
            if step == 0:
                ends = (p[0] & p[2] & p[4] == 0) & (p[2] & p[4] & p[6] == 0)
            else:
                ends = (p[0] & p[2] & p[6] == 0) & (p[0] & p[4] & p[6] == 0)
            centre = img[1:-1, 1:-1]
            remove = (centre == 1) & (count >= 2) & (count <= 6) & (turns == 1) & ends
            if remove.any():
                centre[remove] = 0
                changed = True
    return img[1:-1, 1:-1].astype(bool)


def _hairline(img28: np.ndarray, widen: bool = False) -> np.ndarray:
    """The skeleton of the 4x upscaled digit (1 px at 112 px; 2 px when `widen`), lightly
    anti-aliased, dark on white."""
    ink = _resize(_ink(img28), 112, 112)
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.5), np.flatnonzero(ink.max(axis=0) > 0.5)
    box = np.s_[max(0, rows[0] - 1):rows[-1] + 2, max(0, cols[0] - 1):cols[-1] + 2]
    line = np.zeros(ink.shape, np.float32)
    line[box] = _skeleton(ink[box] > 0.5)  # thinning the ink's box only: same, and faster
    if widen:
        line = ndi.grey_dilation(line, footprint=_disk(1))
    return _on_paper(np.clip(ndi.gaussian_filter(line, 0.5) * 1.6, 0, 1))


def thin(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A hairline pen: the skeleton of the 4x upscaled digit (1 px at 112 px, a quarter pixel
    at MNIST scale), lightly anti-aliased."""
    return _encode(_hairline(img28))


def jpeg30(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """Blue ballpoint on off-white paper, 112x112, saved as a quality-30 JPEG."""
    ink = _resize(_ink(img28), 112, 112)[..., None]
    paper = np.array([0.96, 0.94, 0.88]) * rng.uniform(0.9, 1.0)
    pen = np.array([0.10, 0.15, 0.45])
    rgb = np.rint((paper - ink * (paper - pen)) * 255).astype(np.uint8)
    return _encode(rgb, "JPEG", quality=30)


def noise(img28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float [0, 1] array: 84x84 dark-on-light digit with Gaussian noise (sigma 0.12)."""
    ink = _resize(_ink(img28), 84, 84)
    grey = 0.9 - ink * 0.75 + rng.normal(0.0, 0.12, ink.shape)
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def rotated(img28: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The 4x upscaled dark-on-white digit rotated by up to 15 degrees either way."""
    page = Image.fromarray(_on_paper(_resize(_ink(img28), 112, 112)), "L")
    return page.rotate(float(rng.uniform(-15, 15)), Image.BICUBIC, expand=True, fillcolor=255)


def _canvas_alpha(img28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Alpha of a digit drawn at a random size and place on a 280x280 browser canvas."""
    digit = _scaled_crop(img28, float(rng.uniform(140, 230)))
    h, w = digit.shape
    y = int(rng.integers(5, max(6, 275 - h)))
    x = int(rng.integers(5, max(6, 275 - w)))
    return np.rint(_place(digit, (280, 280), y, x) * 255).astype(np.uint8)


def canvas_png(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """Black strokes on a transparent 280x280 RGBA PNG (transparent pixels are (0, 0, 0, 0),
    as a browser canvas exports them: ignoring alpha leaves black on black)."""
    alpha = _canvas_alpha(img28, rng)
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = alpha
    return _encode(rgba)


def white_on_transparent(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """White strokes on a transparent 280x280 PNG whose transparent pixels are white too
    (ignoring alpha leaves white on white)."""
    alpha = _canvas_alpha(img28, rng)
    rgba = np.full((280, 280, 4), 255, np.uint8)
    rgba[..., 3] = alpha
    return _encode(rgba)


def shadow(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo: 160x160 pencil digit on paper lit unevenly, with a soft shadow across
    one side, sensor noise and JPEG quality 70."""
    ink = _place(_resize(_ink(img28), 120, 120), (160, 160), *rng.integers(10, 31, 2))
    yy, xx = np.mgrid[0:160, 0:160] / 160.0
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.85 + 0.12 * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))
    edge = rng.uniform(0.15, 0.4)
    light = light * (1 - 0.35 * (1 / (1 + np.exp(((xx if rng.random() < 0.5 else yy) - edge)
                                                  / 0.05))))
    grey = light * (1 - 0.7 * ink) + rng.normal(0, 0.02, ink.shape)
    return _encode(np.rint(np.clip(grey, 0, 1) * 255).astype(np.uint8), "JPEG", quality=70)


CONDITIONS: dict[str, Condition] = {
    "mnist": mnist,
    "dark_on_white": dark_on_white,
    "paper_200": paper_200,
    "corner": corner,
    "small": small,
    "large": large,
    "thick": thick,
    "thin": thin,
    "jpeg30": jpeg30,
    "noise": noise,
    "rotated": rotated,
    "canvas_png": canvas_png,
    "white_on_transparent": white_on_transparent,
    "shadow": shadow,
}

# Conditions that destroy information the model relies on; their goal is 98%, not 99%.
HARD_CONDITIONS = frozenset({"noise", "rotated"})


# ----------------------------------------------------------------------------- training


def pen_and_size(img28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random pen and size, for training (not a benchmark condition): a fat marker (4x
    digit dilated by a 2-6 px disk), a fine pen (its 1-2 px skeleton) or a tiny digit (6-14 px
    tall), dark on white (uint8). Teaches the models what preprocessing makes of such input."""
    kind = rng.integers(3)
    if kind == 0:
        return _fat_marker(img28, int(rng.integers(2, 7)))
    if kind == 1:
        return _hairline(img28, widen=rng.random() < 0.5)
    digit = _scaled_crop(img28, float(rng.uniform(6, 14)))
    h, w = digit.shape
    return _on_paper(_place(digit, (h + 8, w + 8), 4, 4))


# ----------------------------------------------------------------------------- numbers


def compose_number(digits: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A line of MNIST digits written on a white page (dark ink, uint8 2-D): random sizes
    (0.85-1.15x of a 48 px line), baseline jitter, gaps from slight overlap to half a digit."""
    line = 48.0
    pieces = [_scaled_crop(d, _crop(_ink(d)).shape[0] * line / 20 * rng.uniform(0.85, 1.15))
              for d in digits]
    margin = 16
    height = int(max(p.shape[0] for p in pieces) + 2 * margin + 8)
    xs, cursor = [], margin
    for piece in pieces:
        xs.append(cursor)
        cursor += piece.shape[1] + int(round(rng.uniform(-0.04, 0.5) * line))
    width = int(xs[-1] + pieces[-1].shape[1] + margin)
    ink = np.zeros((height, width), np.float32)
    for piece, x in zip(pieces, xs, strict=True):
        y = (height - piece.shape[0]) // 2 + int(rng.integers(-4, 5))
        ink = np.maximum(ink, _place(piece, (height, width), y, x))
    return _on_paper(ink)
