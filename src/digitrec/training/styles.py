"""Continental-style variants of MNIST digits: the ways people outside the US write digits that
MNIST's (American) writers never did, drawn onto MNIST training images so that the models learn
them without any data of those writers.

    1  a flag: a straight up-stroke from the top of the 1, drawn down-left, either steep and
       short (30-60° below horizontal, 25-55% of the height) or, on an upright 1, long and
       shallow (12-30°, 45-80%), as many Europeans write it; an American 7 differs from that
       only by its slanted stem and level bar, and continental writers cross their 7s; and
       sometimes a base (a short horizontal foot)
    7  a crossbar through the middle of the stem
    0  a slash from top right to bottom left
    9  a curled tail: the stem's foot hooks round to the left, like a J

Each new stroke is as wide as the digit's own (estimated from its ink area and outline), drawn
at 4x with PIL and box-downsampled for anti-aliasing like MNIST's strokes, and the result is
recentred by its centre of mass as MNIST's digits are (one that outgrows MNIST's 20x20 box is
first shrunk back into it). Labels never change: a styled 1 is a 1.
`styled_copies` draws a seeded set of extra styled copies of the training images, which
`loop.train` appends when a recipe's `styles` is > 0. Numpy and PIL only (no torch)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from digitrec.preprocess.geometry import bounds, extent

SCALE = 4  # drawn at 4x, then box-downsampled
PAD = 6  # room around the 28x28 image while drawing and recentring
# Fraction of each label's training images that get a styled copy (times the recipe's `styles`)
FRACTIONS = {1: 0.6, 7: 0.4, 0: 0.25, 9: 0.3}
BOX = 20  # MNIST fits each digit into a 20x20 box
# The ranges every variant is drawn from (recorded on the model cards)
SETTINGS = {
    "fractions": {str(k): v for k, v in FRACTIONS.items()},
    "one_flag_angle_deg": (30.0, 60.0),  # below horizontal, down-left from the top
    "one_flag_length": (0.25, 0.55),  # of the digit's height
    "one_long_flag_probability": 0.5,  # of the upright 1s: the long, shallow flag instead
    "one_long_flag_angle_deg": (12.0, 30.0),
    "one_long_flag_length": (0.45, 0.8),
    "one_upright_max_slant": 0.2,  # |dx/dy| of the ink's axis for a 1 to count as upright
    "one_base_probability": 0.3,
    "one_base_half_length": (0.15, 0.3),  # of the height, each side of the foot
    "seven_bar_height": (0.45, 0.62),  # where the crossbar crosses the stem, from the top
    "seven_bar_half_length": (0.16, 0.3),  # of the height
    "seven_bar_tilt_deg": (-8.0, 8.0),
    "zero_slash_overshoot": (-0.05, 0.12),  # past the ink's box, of the height
    "nine_tail_radius": (0.1, 0.22),  # of the height; the hook reaches this far below the foot
    "nine_tail_sweep_deg": (120.0, 200.0),  # round from the foot: 90 is its lowest point
    "stroke_width": "2 x ink area / outline length (x1.1), 1.5-5 px",
}


def stroke_width(image: np.ndarray) -> float:
    """The pen width (pixels) of a light-on-dark uint8 digit: a stroke of length L and width w
    has area L*w and outline about 2L, so w ≈ 2 x area / outline."""
    ink = image.astype(np.float64) / 255.0
    solid = image >= 128
    outline = (np.count_nonzero(solid[:, 1:] != solid[:, :-1])
               + np.count_nonzero(solid[1:, :] != solid[:-1, :]))
    if outline == 0:
        return 2.0
    return float(np.clip(1.1 * 2.0 * ink.sum() / outline, 1.5, 5.0))


def _strokes(lines: list[tuple[float, float, float, float]], width: float,
             size: int) -> np.ndarray:
    """Straight round-capped strokes (x0, y0, x1, y1 in pixel coordinates of a size x size
    image) drawn at SCALE x and box-downsampled: uint8 (size, size)."""
    canvas = Image.new("L", (size * SCALE, size * SCALE), 0)
    draw = ImageDraw.Draw(canvas)
    pen = max(1, round(width * SCALE))
    r = width * SCALE / 2
    for x0, y0, x1, y1 in lines:
        points = [((x0 + 0.5) * SCALE, (y0 + 0.5) * SCALE), ((x1 + 0.5) * SCALE,
                                                             (y1 + 0.5) * SCALE)]
        draw.line(points, fill=255, width=pen)
        for x, y in points:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    return np.asarray(canvas.resize((size, size), Image.BOX))


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ink = image.astype(np.float64)
    total = ink.sum() or 1.0
    ys, xs = np.indices(image.shape)
    return float((ink * ys).sum() / total), float((ink * xs).sum() / total)


def _ink_x(image: np.ndarray, rows: slice) -> float | None:
    """Intensity-weighted mean column of the ink in `rows`, None when there is none."""
    part = image[rows].astype(np.float64)
    weights = part.sum(axis=0)
    if weights.sum() <= 0:
        return None
    return float((weights * np.arange(image.shape[1])).sum() / weights.sum())


def slant(image: np.ndarray) -> float:
    """How far the ink's main axis leans from vertical: dx/dy of the intensity-weighted
    least-squares line x(y) (0 for an upright stroke, positive leaning right at the top)."""
    ink = image.astype(np.float64)
    total = ink.sum()
    if total <= 0:
        return 0.0
    ys, xs = np.indices(image.shape)
    my, mx = (ink * ys).sum() / total, (ink * xs).sum() / total
    vy = (ink * (ys - my) ** 2).sum()
    if vy <= 0:
        return 0.0
    return float(-(ink * (ys - my) * (xs - mx)).sum() / vy)


def _lines_one(img: np.ndarray, top: int, bottom: int, width: float,
               rng: np.random.Generator) -> list:
    height = bottom - top + 1
    x0 = _ink_x(img, slice(top, top + 2))
    if x0 is None:
        return []
    y0 = top + width / 2
    long_flag = rng.random() < SETTINGS["one_long_flag_probability"]
    if long_flag and abs(slant(img)) <= SETTINGS["one_upright_max_slant"]:
        angle = math.radians(rng.uniform(*SETTINGS["one_long_flag_angle_deg"]))
        length = rng.uniform(*SETTINGS["one_long_flag_length"]) * height
    else:
        angle = math.radians(rng.uniform(*SETTINGS["one_flag_angle_deg"]))
        length = rng.uniform(*SETTINGS["one_flag_length"]) * height
    lines = [(x0, y0, x0 - length * math.cos(angle), y0 + length * math.sin(angle))]
    if rng.random() < SETTINGS["one_base_probability"]:
        xb = _ink_x(img, slice(bottom - 1, bottom + 1))
        if xb is not None:
            half = rng.uniform(*SETTINGS["one_base_half_length"]) * height
            yb = bottom - width / 2
            tilt = rng.uniform(-0.05, 0.05) * half
            lines.append((xb - half, yb + tilt, xb + half, yb - tilt))
    return lines


def _lines_seven(img: np.ndarray, top: int, bottom: int, width: float,
                 rng: np.random.Generator) -> list:
    height = bottom - top + 1
    y = int(round(top + rng.uniform(*SETTINGS["seven_bar_height"]) * height))
    x = _ink_x(img, slice(y, y + 1))
    if x is None:
        return []
    half = rng.uniform(*SETTINGS["seven_bar_half_length"]) * height
    tilt = math.radians(rng.uniform(*SETTINGS["seven_bar_tilt_deg"]))
    x += rng.uniform(-0.08, 0.08) * height
    dx, dy = half * math.cos(tilt), half * math.sin(tilt)
    return [(x - dx, y + dy, x + dx, y - dy)]


def _lines_zero(img: np.ndarray, top: int, bottom: int, width: float,
                rng: np.random.Generator) -> list:
    height = bottom - top + 1
    cols = np.flatnonzero(img.max(axis=0) >= 128)
    if len(cols) == 0:
        return []
    left, right = cols[0], cols[-1]
    a, b = (rng.uniform(*SETTINGS["zero_slash_overshoot"]) * height for _ in range(2))
    # from top right to bottom left, each end a little inside or past the ink's box
    return [(right + a * 0.7, top - a, left - b * 0.7, bottom + b)]


def _lines_nine(img: np.ndarray, top: int, bottom: int, width: float,
                rng: np.random.Generator) -> list:
    height = bottom - top + 1
    xb = _ink_x(img, slice(bottom - 1, bottom + 1))
    if xb is None:
        return []
    radius = rng.uniform(*SETTINGS["nine_tail_radius"]) * height
    sweep = math.radians(rng.uniform(*SETTINGS["nine_tail_sweep_deg"]))
    # an arc round a centre left of the foot: from the foot (angle 0) down, then left and up
    cx, cy = xb - radius, bottom - width / 2
    steps = max(4, int(sweep / math.radians(15)))
    turns = [sweep * i / steps for i in range(steps + 1)]
    points = [(cx + radius * math.cos(t), cy + radius * math.sin(t)) for t in turns]
    return [(*a, *b) for a, b in zip(points[:-1], points[1:], strict=True)]


DRAWERS = {1: _lines_one, 7: _lines_seven, 0: _lines_zero, 9: _lines_nine}


def _extent(image: np.ndarray) -> int:
    """The longer side of the box round the ink, in pixels (0 for a blank image)."""
    return max(extent(bounds(image > 0))) if image.any() else 0


def _fit_box(canvas: np.ndarray, limit: int) -> np.ndarray:
    """`canvas` with its ink shrunk about its centre to `limit` pixels on its longer side when it
    is larger (as MNIST sizes its digits into 20x20); unchanged otherwise."""
    box = bounds(canvas > 0)
    if max(extent(box)) <= limit:
        return canvas
    crop = Image.fromarray(canvas[box])  # Pillow's uint8 Lanczos, as the shipped weights saw
    scale = limit / max(extent(box))
    crop = np.asarray(crop.resize((max(1, round(crop.width * scale)),
                                   max(1, round(crop.height * scale))), Image.LANCZOS))
    out = np.zeros_like(canvas)
    y = (box[0].start + box[0].stop - crop.shape[0]) // 2
    x = (box[1].start + box[1].stop - crop.shape[1]) // 2
    out[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
    return out


def restyle(image: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """A continental-style variant of a 28x28 uint8 digit of `label` (a copy); other labels, and
    digits with too little ink to find their parts, come back unchanged (a copy)."""
    image = np.asarray(image, dtype=np.uint8)
    drawer = DRAWERS.get(int(label))
    rows = np.flatnonzero(image.max(axis=1) >= 128)
    if drawer is None or len(rows) < 4:
        return image.copy()
    top, bottom = int(rows[0]), int(rows[-1])
    width = stroke_width(image)
    lines = drawer(image, top, bottom, width, rng)
    if not lines:
        return image.copy()
    size = image.shape[0] + 2 * PAD
    shifted = [(x0 + PAD, y0 + PAD, x1 + PAD, y1 + PAD) for x0, y0, x1, y1 in lines]
    canvas = np.zeros((size, size), dtype=np.uint8)
    canvas[PAD:PAD + image.shape[0], PAD:PAD + image.shape[1]] = image
    limit = max(BOX, _extent(image))  # no smaller than it came
    canvas = _fit_box(np.maximum(canvas, _strokes(shifted, width, size)), limit)
    # recentre: the new centre of mass where the old one was, as MNIST centres its digits
    (cy, cx), (oy, ox) = _centre_of_mass(canvas), _centre_of_mass(image)
    dy = int(np.clip(round(cy - PAD - oy), -PAD, PAD))
    dx = int(np.clip(round(cx - PAD - ox), -PAD, PAD))
    return canvas[PAD + dy:PAD + dy + image.shape[0], PAD + dx:PAD + dx + image.shape[1]].copy()


def styled_copies(images: np.ndarray, labels: np.ndarray, seed: int = 0,
                  scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Styled copies of a seeded random FRACTIONS[label] x `scale` of each styled label's
    images (same labels): extra training images, to append to the originals."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picks = []
    for label, fraction in FRACTIONS.items():
        index = np.flatnonzero(labels == label)
        count = min(len(index), round(fraction * scale * len(index)))
        picks.append(rng.choice(index, size=count, replace=False))
    chosen = np.sort(np.concatenate(picks)) if picks else np.array([], dtype=int)
    out = np.stack([restyle(images[i], labels[i], rng) for i in chosen]) if len(chosen) else (
        np.zeros((0, *images.shape[1:]), dtype=np.uint8))
    return out, labels[chosen].copy()
