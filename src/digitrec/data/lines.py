"""Synthetic lines of handwritten digits for the sequence reader, composed from MNIST digits
the way people write numbers (no data beyond MNIST's licence).

A line holds 1-12 digits (runs of zeros included), each scaled ±20% and stretched, on a
wandering baseline, slanted, with gaps from overlapping (-15% of the height) to wide, sometimes
joined by a ligature, sometimes beside marks that are not digits (a dot, a comma, a dash, a
currency sign, a ruled line): `synth_line(images, labels, rng)`, a clean ink map (a canvas).
`on_paper` prints it on paper — grey, grainy or patterned, faint ballpoint or bold felt pen,
blurred — for reading back through `preprocess.to_ink`, as a scan is. Everything is seeded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

LENGTHS = np.arange(1, 13)
LENGTH_WEIGHTS = np.array([4, 8, 8, 8, 8, 8, 8, 8, 4, 3, 2, 2], float)
SPACINGS = {"touching": (0.35, (-0.15, 0.03)), "normal": (0.4, (0.03, 0.4)),
            "wide": (0.25, (0.4, 1.0))}  # class: (share of lines, gap range in digit heights)


def _digit(img28: np.ndarray, height: float, stretch: float) -> np.ndarray:
    """One MNIST digit's ink box, `height` px high and `stretch` times its natural width."""
    ink = np.asarray(img28, np.float32) / 255.0
    rows = np.flatnonzero(ink.max(axis=1) > 0.1)
    cols = np.flatnonzero(ink.max(axis=0) > 0.1)
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = height / crop.shape[0]
    width = max(1, round(crop.shape[1] * scale * stretch))
    out = Image.fromarray(np.ascontiguousarray(crop), "F").resize(
        (width, max(1, round(height))), Image.BICUBIC)
    return np.clip(np.asarray(out), 0.0, 1.0)


def _mark(kind: str, height: float, rng: np.random.Generator) -> np.ndarray:
    """A mark that is not a digit, as ink (h, w), drawn with a pen of about a digit's stroke."""
    pen = max(1, round(height * rng.uniform(0.07, 0.13)))
    if kind == "dot":
        w = h = pen + 2
        shapes = [("ellipse", (1, 1, w - 1, h - 1))]
    elif kind == "comma":
        w, h = pen + 3, int(height * 0.3)
        shapes = [("ellipse", (1, 1, w - 1, pen + 2)), ("line", (w - 2, pen, 1, h - 1))]
    elif kind == "dash":
        w, h = int(height * rng.uniform(0.3, 0.7)), pen + 2
        shapes = [("line", (1, h // 2, w - 1, h // 2))]
    else:  # a currency sign: an S-like curve crossed by a bar, or a C with two bars
        w, h = int(height * 0.6), int(height * 1.1)
        if rng.random() < 0.5:
            shapes = [("arc", (1, 3, w - 1, h // 2 + 1, 180, 450)),
                      ("arc", (1, h // 2 - 1, w - 1, h - 4, 0, 270)),
                      ("line", (w // 2, 0, w // 2, h - 1))]
        else:
            shapes = [("arc", (1, 3, w + w // 2, h - 4, 90, 270)),
                      ("line", (0, h // 2 - pen, w - 1, h // 2 - pen)),
                      ("line", (0, h // 2 + pen, w - 1, h // 2 + pen))]
    image = Image.new("L", (max(w, 2), max(h, 2)), 0)
    draw = ImageDraw.Draw(image)
    for shape, xy in shapes:
        if shape == "ellipse":
            draw.ellipse(xy, fill=255)
        elif shape == "line":
            draw.line(xy, fill=255, width=pen)
        else:
            draw.arc(xy[:4], xy[4], xy[5], fill=255, width=pen)
    return np.asarray(image, np.float32) / 255.0


def _paste(canvas: np.ndarray, ink: np.ndarray, y: int, x: int) -> None:
    """Ink pasted onto the canvas in place (the darker wins), clipped at the edges."""
    h, w = ink.shape
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(canvas.shape[0], y + h), min(canvas.shape[1], x + w)
    if y1 > y0 and x1 > x0:
        np.maximum(canvas[y0:y1, x0:x1], ink[y0 - y:y1 - y, x0 - x:x1 - x],
                   out=canvas[y0:y1, x0:x1])


def _pen(ink: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
    """The line rewritten with another pen: as is, bold (dilated), thin (eroded) or soft."""
    kind = rng.choice(4, p=[0.4, 0.3, 0.15, 0.15])
    if kind == 1:
        size = max(2, round(height * rng.uniform(0.04, 0.12)))
        return ndi.grey_dilation(ink, size=(size, size))
    if kind == 2 and height >= 30:
        return ndi.grey_erosion(ink, size=(2, 2)) * rng.uniform(0.8, 1.0)
    if kind == 3:
        return ndi.gaussian_filter(ink, rng.uniform(0.5, 1.2))
    return ink


def on_paper(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ink printed on paper and scanned: uint8 grey, paper 130-255 with grain, blotches or a
    security pattern, the pen from faint ballpoint to black, slightly blurred."""
    h, w = ink.shape
    paper = rng.uniform(0.5, 1.0)
    pen = rng.uniform(0.0, paper * 0.6)
    background = np.full((h, w), paper, np.float32)
    texture = rng.choice(3)
    if texture == 1:  # blotches
        background += ndi.gaussian_filter(rng.normal(0, 0.08, (h, w)).astype(np.float32), 6) * 4
    elif texture == 2:  # a guilloche-like pattern of fine waves
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = rng.uniform(4, 10)
        background -= rng.uniform(0.03, 0.12) * (
            0.5 + 0.5 * np.sin((xx + 3 * np.sin(yy / period)) / period * 2 * np.pi))
    grey = background - ink * (background - pen)
    grey = ndi.gaussian_filter(grey, rng.uniform(0.3, 1.0))
    grey += rng.normal(0, rng.uniform(0.0, 0.04), grey.shape)
    return np.rint(np.clip(grey, 0, 1) * 255).astype(np.uint8)


def synth_line(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
               restyle: Callable[[np.ndarray, int, np.random.Generator], np.ndarray] | None = None
               ) -> tuple[np.ndarray, str]:
    """A synthetic line from MNIST `images`/`labels`: (ink map float32 in [0, 1], its digits);
    `restyle(image, label, rng)`, when given, may redraw each digit (same label) first."""
    n = int(rng.choice(LENGTHS, p=LENGTH_WEIGHTS / LENGTH_WEIGHTS.sum()))
    picks = rng.integers(len(images), size=n)
    if n >= 3 and rng.random() < 0.1:  # a run of zeros, often written as one chain
        zeros = np.flatnonzero(labels == 0)
        start = int(rng.integers(0, n - 1))
        run = int(rng.integers(2, n - start + 1))
        picks[start:start + run] = rng.choice(zeros, size=run)
    spacing = rng.choice(list(SPACINGS), p=[v[0] for v in SPACINGS.values()])
    low, high = SPACINGS[spacing][1]
    height = float(rng.uniform(24, 56))
    digits = [_digit(restyle(images[i], int(labels[i]), rng) if restyle else images[i],
                     height * rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25)) for i in picks]
    marks = []
    if rng.random() < 0.3:
        kind = rng.choice(["dot", "comma", "dash", "currency", "ruled"])
        marks.append((kind, int(rng.integers(0, n + 1))))  # before digit k
    margin = int(height * 0.6)
    pad_y = int(height)
    canvas = np.zeros((int(height * 1.5) + 2 * pad_y, sum(d.shape[1] for d in digits)
                       + int(n * height * 1.2) + 2 * margin + int(2 * height)), np.float32)
    baseline = pad_y + height * 1.2
    x = margin
    boxes = []
    for k, digit in enumerate(digits):
        for kind, at in marks:
            if at == k and kind not in ("ruled",):
                mark = _mark(kind, height, rng)
                y = (int(baseline - mark.shape[0]) if kind in ("dot", "comma")
                     else int(baseline - height / 2 - mark.shape[0] / 2) if kind == "dash"
                     else int(baseline - mark.shape[0]))
                if kind == "comma":
                    y += mark.shape[0] // 2
                x += int(height * rng.uniform(0.1, 0.3))
                _paste(canvas, mark, y, x)
                x += mark.shape[1] + int(height * rng.uniform(0.1, 0.3))
        baseline += rng.uniform(-0.06, 0.06) * height
        y = int(baseline - digit.shape[0] + rng.uniform(-0.05, 0.05) * height)
        _paste(canvas, digit, y, x)
        boxes.append((y, x, digit.shape))
        x += digit.shape[1] + int(round(rng.uniform(low, high) * height))
    for kind, at in marks:
        if at == n and kind != "ruled":
            mark = _mark(kind, height, rng)
            _paste(canvas, mark, int(baseline - mark.shape[0]), x + int(height * 0.2))
            x += mark.shape[1] + int(height * 0.4)
        if kind == "ruled":  # a line under (or through the feet of) the whole number
            ruled = np.full((max(1, int(height * 0.05)), x - margin // 2),
                            rng.uniform(0.5, 1.0), np.float32)
            _paste(canvas, ruled, int(baseline + rng.uniform(0.0, 0.3) * height), margin // 2)
    if rng.random() < 0.15 and n >= 2:  # a ligature from one digit's foot to the next's side
        k = int(rng.integers(0, n - 1))
        (ya, xa, (ha, wa)), (yb, xb, (hb, _)) = boxes[k], boxes[k + 1]
        image = Image.fromarray((canvas * 255).astype(np.uint8))
        ImageDraw.Draw(image).line((xa + wa - 2, ya + ha - 2, xb + 2, yb + hb // 2),
                                   fill=255, width=max(1, int(height * 0.08)))
        canvas = np.asarray(image, np.float32) / 255.0
    canvas = canvas[:, :x + margin]
    shear = rng.uniform(-0.3, 0.3)
    if abs(shear) > 0.05:
        h, w = canvas.shape
        extra = int(abs(shear) * h)
        wide = np.zeros((h, w + extra), np.float32)
        wide[:, extra // 2:extra // 2 + w] = canvas
        canvas = np.asarray(Image.fromarray(wide, "F").transform(
            wide.shape[::-1], Image.AFFINE, (1, shear, -shear * h / 2, 0, 1, 0),
            Image.BILINEAR))
    canvas = np.clip(_pen(canvas, height, rng), 0.0, 1.0)
    label = "".join(str(int(labels[i])) for i in picks)
    return canvas.astype(np.float32), label
