"""Shared by the benchmarks (not one itself): a browser-canvas-style PNG of a handwritten digit."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

# A "7" with a crossbar, in canvas coordinates (fractions of the side).
STROKES = [[(0.25, 0.22), (0.72, 0.2), (0.5, 0.55), (0.4, 0.82)], [(0.38, 0.5), (0.62, 0.5)]]


def canvas_png(side: int = 280, width: int = 18, supersample: int = 4) -> bytes:
    """RGBA PNG like the page's pad sends: black anti-aliased strokes on opaque white."""
    big = side * supersample
    image = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(image)
    w = width * supersample
    for stroke in STROKES:
        points = [(x * big, y * big) for x, y in stroke]
        draw.line(points, fill=0, width=w, joint="curve")
        for x, y in points:
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=0)
    image = image.resize((side, side), Image.LANCZOS).convert("RGBA")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
