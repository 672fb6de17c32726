"""digitrec.data.strokes: reading a strokes file and drawing strokes as the page's pad and a
scan would show them (hand-made strokes, no DigiLeTs data)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from digitrec.data.strokes import (
    DEFAULT_PEN,
    PAD_SIZE,
    StrokeDigit,
    canvas_path,
    load_strokes,
    pad_points,
    render_strokes,
)
from digitrec.errors import DataError

# A "1": a short flag up to the top, then a long downstroke; and a "7": bar then diagonal.
ONE = [[(0.40, 0.35, 0.0), (0.52, 0.22, 0.1)], [(0.52, 0.22, 0.2), (0.52, 0.50, 0.3),
                                                (0.52, 0.78, 0.4)]]
SEVEN = [[(0.30, 0.25), (0.50, 0.25), (0.70, 0.25), (0.55, 0.50), (0.42, 0.78)]]


def _ink(image: Image.Image) -> np.ndarray:
    """Darkness in [0, 1] of an image's grey."""
    return 1 - np.asarray(image.convert("L"), dtype=np.float32) / 255


def test_canvas_is_the_pads_png_export():
    image = render_strokes(ONE)
    assert image.size == (PAD_SIZE, PAD_SIZE) and image.mode == "RGBA"
    pixels = np.asarray(image)
    assert (pixels[..., 3] == 255).all()  # opaque, as the pad fills white before drawing
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    ink = _ink(image)
    # black on the downstroke (x = 0.52 of 280 ≈ 146), white far from every stroke
    assert ink[140, 143:150].min() > 0.99
    assert ink[140, 100] == 0 and ink[20, 20] == 0 and ink[260, 260] == 0
    row = ink[140, 120:170]
    assert ((row > 0) & (row < 1)).any()  # anti-aliased edges
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert Image.open(buffer).size == (PAD_SIZE, PAD_SIZE)


def test_pen_width_sets_the_stroke_width():
    widths = {}
    for pen in (8, DEFAULT_PEN, 30):
        row = _ink(render_strokes(ONE, pen=pen))[140]
        widths[pen] = float(row.sum())  # ink across the vertical downstroke ≈ the pen width
    for pen, width in widths.items():
        assert abs(width - pen) < 1.0, widths
    bigger = _ink(render_strokes(ONE, size=600, pen=DEFAULT_PEN))
    assert bigger.shape == (600, 600)
    assert abs(bigger[300].sum() - DEFAULT_PEN) < 1.0  # pen in pad pixels, whatever the pad


def test_round_caps_reach_past_the_stroke_ends():
    ink = _ink(render_strokes(ONE, pen=20))
    bottom = int(0.78 * PAD_SIZE)
    assert ink[bottom + 8, 146] > 0.9  # within half the pen below the last point
    assert ink[bottom + 12, 146] == 0  # and no further


def test_a_lone_point_is_a_disc():
    ink = _ink(render_strokes([[(0.5, 0.5)]], pen=20))
    ys, xs = np.nonzero(ink > 0.5)
    assert abs(ys.mean() - 140) < 1 and abs(xs.mean() - 140) < 1
    assert ys.max() - ys.min() in (19, 20, 21) and xs.max() - xs.min() in (19, 20, 21)
    assert abs(ink.sum() - np.pi * 10 ** 2) < 0.05 * np.pi * 10 ** 2


def test_points_are_kept_as_the_pad_keeps_them():
    # under 1 px from the last kept point: dropped; a long gap: filled every half pen width
    kept = pad_points([(0.0, 0.0), (0.001, 0.0), (0.5, 0.0)], size=100, pen=10)
    assert kept[0] == (0.0, 0.0) and kept[-1] == (50.0, 0.0)
    assert len(kept) == 11 and np.allclose(np.diff([x for x, _ in kept]), 5)
    path = canvas_path([(0, 0), (10, 0), (10, 10)])
    assert path[0] == (0, 0) and path[-1] == (10, 10)
    assert (10.0, 5.0) in path  # the curve ends at the midpoint, then a line to the last


def test_rendering_is_deterministic_and_scans_depend_on_the_seed():
    for style in ("canvas", "bold", "thin"):
        a = np.asarray(render_strokes(SEVEN, style=style, seed=3))
        assert np.array_equal(a, np.asarray(render_strokes(SEVEN, style=style, seed=3)))
    assert not np.array_equal(np.asarray(render_strokes(SEVEN, style="bold", seed=1)),
                              np.asarray(render_strokes(SEVEN, style="bold", seed=2)))


def test_scans_are_dark_ink_on_light_paper_bold_or_thin():
    bold, thin = render_strokes(SEVEN, style="bold"), render_strokes(SEVEN, style="thin")
    assert bold.mode == thin.mode == "L"
    for image in (bold, thin):
        pixels = np.asarray(image, dtype=float)
        assert 200 < np.median(pixels) < 250  # grey-white paper
        assert pixels.min() < 100  # dark ink
        assert pixels[20:40, 20:40].std() > 0.5  # the paper has grain
    ink_bold, ink_thin = (np.asarray(i) < 150 for i in (bold, thin))
    assert ink_bold.sum() > 4 * ink_thin.sum() > 0


def test_load_strokes_reads_digilets_lines(tmp_path):
    path = tmp_path / "digits.jsonl"
    lines = [{"writer": "007", "label": 1, "instance": 2, "strokes": ONE},
             {"writer": "008", "label": 7, "instance": 0, "strokes": SEVEN, "age": 30}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    digits = load_strokes(path)
    assert digits[0] == StrokeDigit("007", 1, 2, [[(0.40, 0.35), (0.52, 0.22)],
                                                  [(0.52, 0.22), (0.52, 0.50), (0.52, 0.78)]])
    assert [d.label for d in digits] == [1, 7] and digits[1].writer == "008"
    assert np.array_equal(np.asarray(render_strokes(digits[0].strokes)),
                          np.asarray(render_strokes(ONE)))


@pytest.mark.parametrize("text, message", [
    ('{"label": 12, "strokes": [[[0.1, 0.1]]]}', "label must be 0-9"),
    ('{"label": 3}', "line 1: not a digit"),
    ("not json", "line 1"),
    ("", "holds no digits"),
])
def test_load_strokes_names_a_bad_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_strokes(path)
    with pytest.raises(DataError, match="cannot read"):
        load_strokes(tmp_path / "missing.jsonl")


def test_bad_style_or_pen_is_a_data_error():
    with pytest.raises(DataError, match="canvas, bold, thin"):
        render_strokes(ONE, style="crayon")
    with pytest.raises(DataError, match="pen"):
        render_strokes(ONE, pen=0)
