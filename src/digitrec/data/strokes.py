"""Handwritten digits as pen strokes (the DigiLeTs format), and the images they make.

`load_strokes(path)` reads a JSON-lines file of digits, one object a line: `writer`, `label`,
`instance` and `strokes` ([[[x, y, t], ...], ...], x and y in [0, 1] of the writing square, y
growing downwards; t, and any further value of a point, is ignored).

`render_strokes(strokes, size, pen, style)` draws them as a PIL image:

- `style="canvas"` draws exactly as the page's pad does (digitrec/web/static/app.js): the writing
  square mapped onto the whole `size`×`size` pad; each stroke's points filtered and filled in
  as the pad's `addPoint` does (a point under 1 px from the last is dropped, a gap longer than
  half the pen is filled); a path of quadratic curves through the midpoints, ending in a line
  to the last point; black (#000), `pen` pixels wide, round caps and joins, a lone point a
  filled disc; on opaque white (#fff), anti-aliased (drawn at 4× and averaged down). The result
  is RGBA, alpha 255 everywhere, as the pad's `toDataURL("image/png")` exports it. Points
  outside the square fall off the pad, as they would in the browser.
- `style="bold"` and `style="thin"` render the strokes as a scan of paper would show them: dark
  grey ink of a thick marker (bold) or a fine ballpoint (thin) on light grey paper with a
  little grain, slightly blurred as a scanner's optics do; a grey ("L") image. The paper, ink
  and grain vary a little with `seed` and are the same for the same seed.

Save either with `image.save(path_or_buffer, format="PNG")`. Used to measure on real writers
(benchmarks/writers.py, `digitrec evaluate --strokes`) and for experiments; not for the weights
that ship in the package."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digitrec.errors import DataError

PAD_SIZE = 280  # the page's digit pad, in canvas pixels (app.js SIZES.digit)
DEFAULT_PEN = 23  # the page's pen slider starts here (templates/index.html, #pen-width)
STYLES = ("canvas", "bold", "thin")
SUPERSAMPLE = 4  # drawn at 4x and averaged down: anti-aliasing close to a canvas's

Point = tuple[float, float]
Strokes = Sequence[Sequence[Sequence[float]]]


@dataclass(frozen=True)
class StrokeDigit:
    """One handwritten digit as pen strokes: who wrote it, what it is, which of their tries."""

    writer: str
    label: int
    instance: int
    strokes: list[list[Point]]


def load_strokes(path: str | os.PathLike) -> list[StrokeDigit]:
    """The digits of a JSON-lines strokes file (DigiLeTs format); DataError when it cannot be
    read or a line is not a digit."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    digits = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            label = int(item["label"])
            strokes = [[(float(p[0]), float(p[1])) for p in stroke] for stroke in item["strokes"]]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise DataError(f"{path}, line {number}: not a digit's strokes ({exc})") from None
        if not 0 <= label <= 9 or not any(strokes):
            raise DataError(f"{path}, line {number}: label must be 0-9 and strokes non-empty")
        digits.append(StrokeDigit(writer=str(item.get("writer", "")), label=label,
                                  instance=int(item.get("instance", 0)),
                                  strokes=[s for s in strokes if s]))
    if not digits:
        raise DataError(f"{path} holds no digits")
    return digits


def default_pen(style: str, size: int = PAD_SIZE) -> float:
    """The pen width in pixels a style uses unless told: the page's default on the canvas, a
    marker (a tenth of the side) for bold, a ballpoint (1.2% of the side) for thin."""
    check_style(style)
    return {"canvas": DEFAULT_PEN, "bold": 0.10 * size, "thin": max(2.0, 0.012 * size)}[style]


def check_style(style: str) -> str:
    """`style`, or DataError naming the known ones."""
    if style not in STYLES:
        raise DataError(f"unknown stroke style {style!r}: one of {', '.join(STYLES)}")
    return style


def pad_points(stroke: Sequence[Sequence[float]], size: int, pen: float) -> list[Point]:
    """A stroke's points on a `size` pad as the page keeps them (app.js addPoint): under 1 px
    from the last kept point dropped, gaps over half the pen filled with evenly spaced points."""
    points = [(float(p[0]) * size, float(p[1]) * size) for p in stroke]
    kept = [points[0]]
    for x, y in points[1:]:
        px, py = kept[-1]
        dx, dy = x - px, y - py
        if dx * dx + dy * dy < 1:
            continue
        steps = math.floor(math.hypot(dx, dy) / (pen / 2))
        kept.extend((px + dx * i / steps, py + dy * i / steps) for i in range(1, steps))
        kept.append((x, y))
    return kept


def _quadratic(a: Point, c: Point, b: Point) -> list[Point]:
    """Points along the quadratic Bezier a→b with control c, about one pixel apart (a left out)."""
    length = math.dist(a, c) + math.dist(c, b)
    n = max(1, math.ceil(length))
    out = []
    for i in range(1, n + 1):
        t = i / n
        u = 1 - t
        out.append((u * u * a[0] + 2 * u * t * c[0] + t * t * b[0],
                    u * u * a[1] + 2 * u * t * c[1] + t * t * b[1]))
    return out


def canvas_path(points: Sequence[Point]) -> list[Point]:
    """The polyline the pad's path follows: quadratic curves through the midpoints of the
    points (each point the control), then a straight line to the last point."""
    if len(points) < 2:
        return list(points)
    path = [points[0]]
    for i in range(1, len(points) - 1):
        mid = ((points[i][0] + points[i + 1][0]) / 2, (points[i][1] + points[i + 1][1]) / 2)
        path.extend(_quadratic(path[-1], points[i], mid))
    path.append(points[-1])
    return path


def _ink_mask(strokes: Strokes, size: int, pen: float, supersample: int) -> np.ndarray:
    """Ink coverage in [0, 1], (size, size): round-capped, round-joined strokes `pen` wide,
    drawn at `supersample`× and averaged down."""
    big = size * supersample
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    width = pen * supersample
    radius = width / 2
    for stroke in strokes:
        if not stroke:
            continue
        path = [(x * supersample, y * supersample)
                for x, y in canvas_path(pad_points(stroke, size, pen))]
        if len(path) > 1:
            draw.line(path, fill=255, width=max(1, round(width)))
        for x, y in path:  # round joins and caps (and a lone point's disc)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    if supersample > 1:
        canvas = canvas.reduce(supersample)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def render_strokes(strokes: Strokes, size: int = PAD_SIZE, pen: float | None = None,
                   style: str = "canvas", seed: int = 0,
                   supersample: int = SUPERSAMPLE) -> Image.Image:
    """The strokes (points in [0, 1] of the writing square) drawn on a `size`×`size` image:
    `canvas` exactly as the page's pad exports them (RGBA, black on opaque white), `bold` or
    `thin` as a scan shows them ("L", dark ink on light paper; `seed` picks paper and ink).
    `pen`: width in pixels (default: default_pen(style, size))."""
    check_style(style)
    if size < 8:
        raise DataError(f"size must be at least 8 pixels, got {size}")
    pen = float(pen if pen is not None else default_pen(style, size))
    if pen <= 0:
        raise DataError(f"the pen must be wider than 0 pixels, got {pen:g}")
    ink = _ink_mask(strokes, size, pen, supersample)
    if style == "canvas":
        grey = np.rint(255 * (1 - ink)).astype(np.uint8)
        rgba = np.empty((size, size, 4), np.uint8)
        rgba[..., :3] = grey[..., None]
        rgba[..., 3] = 255
        return Image.fromarray(rgba, "RGBA")
    rng = np.random.default_rng(seed)
    paper = rng.uniform(0.88, 0.97)
    dark = rng.uniform(0.08, 0.22) if style == "bold" else rng.uniform(0.18, 0.35)
    grain = rng.normal(0.0, 0.012, (size, size))
    pixels = paper + grain - ink * (paper - dark)
    image = Image.fromarray(np.rint(pixels.clip(0, 1) * 255).astype(np.uint8), "L")
    return image.filter(ImageFilter.GaussianBlur(radius=0.6 * size / PAD_SIZE))
