"""Continental-style transforms (training/styles.py): a 1 gets a flag (a long shallow one only
when it stands upright; sometimes a base), a 7 a crossbar, a 0 a slash, a 9 a hooked tail;
shape, dtype and labels kept, seeded, other digits untouched; and the
STYLE_FINE_TUNE recipe behind `train-ensemble --from`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw

from digitrec.training import styles
from digitrec.training.recipes import BUNDLED, STYLE_FINE_TUNE, style_fine_tuning


def _draw(lines, width=3):
    """A synthetic MNIST-like digit: straight strokes on 28x28, light on dark."""
    canvas = Image.new("L", (112, 112), 0)
    draw = ImageDraw.Draw(canvas)
    for line in lines:
        draw.line([v * 4 for v in line], fill=255, width=width * 4)
    return np.asarray(canvas.resize((28, 28), Image.BOX))


ONE = _draw([(14, 4, 14, 24)])  # a plain American 1: a vertical stem
SEVEN = _draw([(7, 5, 20, 5), (20, 5, 12, 24)])  # top bar, then the stem down-left
ZERO = _draw([(9, 5, 19, 5), (19, 5, 19, 23), (19, 23, 9, 23), (9, 23, 9, 5)])
SLANTED_ONE = _draw([(18, 4, 10, 24)])  # leaning right at the top, like a 7's stem
NINE = _draw([(10, 5, 17, 5), (17, 5, 17, 12), (17, 12, 10, 12), (10, 12, 10, 5),
              (17, 12, 17, 22)])  # a square loop and a straight stem


def _added(out, original):
    """The ink `out` adds to `original`, in out's frame (the recentring shift undone: the shift
    under which out covers the original best)."""
    shifts = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]
    lost = [np.clip(np.roll(original, s, axis=(0, 1)).astype(int) - out, 0, None).sum()
            for s in shifts]
    moved = np.roll(original, shifts[int(np.argmin(lost))], axis=(0, 1))
    return np.clip(out.astype(int) - moved, 0, None), shifts[int(np.argmin(lost))]


def _com(image):
    ys, xs = np.indices(image.shape)
    ink = image.astype(float)
    return (ink * ys).sum() / ink.sum(), (ink * xs).sum() / ink.sum()


def test_stroke_width_is_estimated_from_the_image():
    thin, fat = _draw([(14, 4, 14, 24)], width=2), _draw([(14, 4, 14, 24)], width=4)
    assert 1.5 <= styles.stroke_width(thin) < styles.stroke_width(fat) <= 5.0
    assert abs(styles.stroke_width(fat) - 4) < 1.2


def test_a_one_gets_a_flag_up_left_of_its_top():
    out = styles.restyle(ONE, 1, np.random.default_rng(0))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    added, (dy, dx) = _added(out, ONE)
    top, stem = 4 + dy, 14 + dx
    assert added[top:top + 10, :stem - 1].sum() > 255 * 6  # ink left of the stem, below its top
    assert added[:top + 12, stem + 3:].sum() < 255  # none right of the stem (a base is lower)
    assert abs(_com(out)[1] - _com(ONE)[1]) <= 1.0  # recentred like MNIST


def _flag_steepness(out, original):
    """Height over width of the ink a restyle added (1 for a 45° stroke, small when shallow)."""
    added, _ = _added(out, original)
    rows, cols = np.flatnonzero(added.sum(axis=1) > 100), np.flatnonzero(added.sum(axis=0) > 100)
    return (rows.max() - rows.min() + 1) / (cols.max() - cols.min() + 1)


def test_only_an_upright_one_gets_the_long_shallow_flag():
    assert abs(styles.slant(ONE)) < 0.05 and styles.slant(SLANTED_ONE) > 0.3
    upright = [_flag_steepness(styles.restyle(ONE, 1, np.random.default_rng(s)), ONE)
               for s in range(30)]
    slanted = [_flag_steepness(styles.restyle(SLANTED_ONE, 1, np.random.default_rng(s)),
                               SLANTED_ONE) for s in range(30)]
    assert sum(r < 0.55 for r in upright) >= 5  # long and shallow, like a European 1's
    assert sum(r > 0.75 for r in upright) >= 5  # short and steep
    assert min(slanted) > 0.55  # a slanted stem with a shallow flag would be a 7


def test_a_nine_gets_a_tail_hooked_left_under_its_foot_and_stays_in_the_box():
    for seed in range(5):
        out = styles.restyle(NINE, 9, np.random.default_rng(seed))
        rows = np.flatnonzero(out.max(axis=1) >= 64)
        cols = np.flatnonzero(out.max(axis=0) >= 64)
        assert rows[-1] - rows[0] + 1 <= styles.BOX and cols[-1] - cols[0] + 1 <= styles.BOX
        foot = rows[-1] - 2  # the hook's lowest rows: ink left of the stem's column
        stem = int(np.argmax(out[rows[0] + 12]))  # the stem below the loop
        assert out[foot:rows[-1] + 1, :stem - 1].sum() > 255 * 2
        assert out.sum() > NINE.sum() * 0.9  # a tail added, the digit shrunk a little at most


def test_a_seven_gets_a_crossbar_across_its_stem():
    out = styles.restyle(SEVEN, 7, np.random.default_rng(1))
    added, (dy, _) = _added(out, SEVEN)
    rows = np.flatnonzero(added.sum(axis=1) > 255) - dy
    assert len(rows) and rows.min() >= 10 and rows.max() <= 20  # mid-stem, not at the top
    cols = np.flatnonzero(added.sum(axis=0) > 100)
    assert cols.max() - cols.min() >= 5  # a bar across, both sides of the stem


def test_a_zero_gets_a_slash_and_other_digits_are_left_alone():
    out = styles.restyle(ZERO, 0, np.random.default_rng(2))
    assert out.sum() > ZERO.sum() + 255 * 5
    assert out[14, 14] > 100  # the middle of the 0 now has ink
    rng = np.random.default_rng(3)
    for label in (2, 3, 4, 5, 6, 8):
        assert np.array_equal(styles.restyle(ZERO, label, rng), ZERO)
    blank = np.zeros((28, 28), np.uint8)
    assert np.array_equal(styles.restyle(blank, 1, rng), blank)


def test_styled_copies_are_seeded_and_keep_labels():
    rng = np.random.default_rng(0)
    labels = np.array([1] * 10 + [7] * 10 + [0] * 8 + [3] * 6 + [9] * 10)
    shifts = rng.integers(-1, 2, size=len(labels))
    drawn = {1: ONE, 7: SEVEN, 0: ZERO, 9: NINE}
    images = np.stack([np.roll(drawn.get(int(y), ZERO), shift, axis=1)
                       for y, shift in zip(labels, shifts, strict=True)])
    x1, y1 = styles.styled_copies(images, labels, seed=5)
    x2, y2 = styles.styled_copies(images, labels, seed=5)
    x3, _ = styles.styled_copies(images, labels, seed=6)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and not np.array_equal(x1, x3)
    assert x1.dtype == np.uint8 and x1.shape[1:] == (28, 28)
    assert np.bincount(y1, minlength=10).tolist() == [2, 6, 0, 0, 0, 0, 0, 4, 0, 3]
    assert len(styles.styled_copies(images, labels, seed=5, scale=0.5)[0]) < len(x1)


def test_the_style_recipe_fine_tunes_each_bundled_member():
    assert set(STYLE_FINE_TUNE) == set(BUNDLED)
    rounds = style_fine_tuning(BUNDLED["vgg8b"], "bundled/vgg8b.safetensors",
                               "out/vgg8b.safetensors")
    assert len(rounds) == 1
    r = rounds[0]
    assert r.init == "bundled/vgg8b.safetensors" and r.styles > 0 and r.elastic
    assert r.name.startswith("vgg8b style fine-tune") and r.architecture == "vgg8"
    assert r.to_dict()["styles"] == r.styles  # recorded on the card's hyperparameters


def test_styles_and_recipes_import_without_torch():
    code = ("import sys, digitrec.training.styles, digitrec.training.recipes; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_train_ensemble_from_checks_its_weights(tmp_path, capsys):
    from digitrec.cli import main
    assert main(["train-ensemble", "--from", str(tmp_path), "--members", "cnnbn",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--from" in capsys.readouterr().err
    assert main(["train-ensemble", "--from", str(tmp_path), "--members", "cnn1",
                 "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
