"""Training the sequence reader: a short real run lowers the CTC loss and writes weights + card."""

from __future__ import annotations

import json

import numpy as np

from digitrec.cli import main
from digitrec.models.sequence import load_reader
from digitrec.training.reader import (
    ReaderRecipe,
    continental,
    read_lines,
    train_reader,
    training_line,
)


def test_a_short_run_learns_and_writes_a_loadable_reader(tmp_path, mnist_dir):
    recipe = ReaderRecipe(steps=40, batch_size=12, lr=3e-3, val_lines=12)
    result = train_reader(tmp_path, recipe, data_dir=str(mnist_dir), progress=False,
                          eval_every=20)
    first, last = result["history"]
    assert last["step"] == 40 and last["loss"] < 0.8 * first["loss"]
    card = json.loads((tmp_path / "reader.json").read_text())
    assert card["recipe"]["steps"] == 40 and card["history"] == result["history"]
    assert "MNIST" in card["training_data"] and card["mnist_files"]
    model, _ = load_reader(tmp_path)
    lines = [np.zeros((32, 64), np.uint8), np.full((32, 96), 255, np.uint8)]
    assert all(set(text) <= set("0123456789") for text in read_lines(model, lines))


def test_training_lines_are_seeded(mnist):
    images, labels = mnist.split("val")
    a = [training_line(images, labels, np.random.default_rng(4)) for _ in range(3)]
    b = [training_line(images, labels, np.random.default_rng(4)) for _ in range(3)]
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True))


def test_the_command_refuses_a_run_of_no_steps(tmp_path, capsys):
    assert main(["train-reader", "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["train-reader", "--styles", "-1", "--out", str(tmp_path)]) == 2
    assert "--styles" in capsys.readouterr().err


def test_continental_redraws_only_1s_7s_0s_and_9s_as_often_as_asked(mnist):
    images, labels = mnist.split("val")
    rng = np.random.default_rng(0)
    never, always = continental(0.0), continental(10.0)
    for image, label in zip(images[:60], labels[:60], strict=True):
        assert never(image, int(label), rng) is image
        styled = always(image, int(label), rng)
        assert (styled is image) == (int(label) not in (0, 1, 7, 9))
        if int(label) == 1:  # a flag (and perhaps a base) was drawn: more ink
            assert styled.astype(int).sum() > image.astype(int).sum()


def test_styled_lines_keep_their_labels_and_the_card_records_the_styles(tmp_path, mnist,
                                                                         mnist_dir):
    images, labels = mnist.split("val")
    some = np.flatnonzero(labels <= 1)  # 0s and 1s only: most get redrawn
    plain = training_line(images[some], labels[some], np.random.default_rng(2))
    styled = training_line(images[some], labels[some], np.random.default_rng(2), styles=1.0)
    assert plain[1] == styled[1] and set(plain[1]) <= {"0", "1"}
    assert not np.array_equal(plain[0], styled[0])
    recipe = ReaderRecipe(steps=2, batch_size=4, val_lines=4, styles=0.5)
    train_reader(tmp_path, recipe, data_dir=str(mnist_dir), progress=False, eval_every=2)
    card = json.loads((tmp_path / "reader.json").read_text())
    assert card["recipe"]["styles"] == 0.5
    assert card["styles"]["share"] == 0.5 and card["styles"]["fractions"]["1"] == 0.6
