"""Training the sequence reader: a short real run lowers the CTC loss and writes weights + card."""

from __future__ import annotations

import json

import numpy as np

from digitrec.cli import main
from digitrec.models.sequence import load_reader
from digitrec.training.reader import ReaderRecipe, read_lines, train_reader, training_line


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
