"""Fine-tuning on corrections (digitrec.training.finetune): a few MNIST validation digits stand
in for corrections and a handful of steps for a run; the output loads as served, its cards
record the run, the split is seeded and keeps a number's digits together, and a model that
loses on MNIST test is refused with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import weights_dir

from digitrec.errors import DataError, UsageError
from digitrec.recognizer import Recognizer
from digitrec.training.finetune import (
    FinetuneRefused,
    finetune,
    split_corrections,
    training_mix,
)
from digitrec.training.interpolate import GRID
from digitrec.training.recipes import CORRECTIONS

TEST_IMAGES = 300


@pytest.fixture(scope="module")
def corrections(mnist):
    """24 validation digits with their labels, as if people had corrected them."""
    images, labels = mnist.split("val")
    return images[:24], labels[:24]


def test_finetune_writes_an_ensemble_that_loads_as_served(corrections, mnist_dir, tmp_path):
    images, labels = corrections
    base = Recognizer.load(weights_dir())
    out = tmp_path / "new"
    result = finetune(images, labels, out, weights=weights_dir(), steps=3,
                      limit_mnist_test=TEST_IMAGES, data_dir=mnist_dir, progress=False,
                      source={"database": "test"})
    base_cards = {p.stem for p in weights_dir().glob("*.safetensors")}
    assert {p.stem for p in out.glob("*.safetensors")} == base_cards
    assert (out / "calibration.json").read_text() == \
        (weights_dir() / "calibration.json").read_text()
    loaded = Recognizer.load(out)
    assert loaded.version == result.version != base.version
    assert set(loaded.cards) == base_cards
    s = result.summary
    assert s["base_version"] == base.version and s["version"] == result.version
    assert s["corrections"]["digits"] == 24
    assert (s["corrections"]["train_digits"], s["corrections"]["held_out_digits"]) == (19, 5)
    assert s["mix"]["correction_images"] + s["mix"]["mnist_replay_images"] == 3 * 128
    assert s["mix"]["replay_ratio"] == 8.0 and s["mix"]["correction_images"] == 43  # 384 / 9
    for when in ("before", "after"):
        assert s[when]["mnist_test"]["images"] == TEST_IMAGES
        assert s[when]["held_out"]["images"] == 5
        assert 0.9 < s[when]["mnist_test"]["accuracy"] <= 1.0
    assert s["mnist_test_change_pt"] >= -0.1
    # auto: the first alpha of the grid that keeps MNIST validation, the base scored first
    assert s["interpolation"]["alpha"] in GRID
    assert s["interpolation"]["validation"][0]["alpha"] == 0.0
    assert s["interpolation"]["validation"][-1]["alpha"] == s["interpolation"]["alpha"]
    for name in base_cards:
        card = json.loads((out / f"{name}.json").read_text())
        base_card = json.loads((weights_dir() / f"{name}.json").read_text())
        assert card["finetune"] == s
        assert card["recipe"] == CORRECTIONS.name
        assert card["architecture"] == base_card["architecture"]
        assert card["dtype"] == base_card["dtype"]  # stored as the base stored it
        assert card["hyperparameters"]["steps"] == 3 and len(card["history"]) == 1
        assert card["history"][0]["steps"] == 3
        assert card["test_accuracy_images"] == TEST_IMAGES and card["test_accuracy"] is None
        assert card["fine_tuned_from"]["command"] == base_card["command"]
    # the int8 ranges were re-recorded for these weights (or, below the bar, left out)
    if (out / "int8.json").exists():
        assert json.loads((out / "int8.json").read_text())["weights_sha256"] == result.version
        assert loaded.inference == "onnxruntime int8"
    else:
        assert "not written" in s["inference"]["int8"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.partial")]


def test_a_model_that_forgets_mnist_is_refused_and_nothing_is_written(corrections, mnist_dir,
                                                                      tmp_path):
    images, _ = corrections
    out = tmp_path / "bad"
    # every "correction" says 0, no replay, a high rate: the models learn to answer 0
    with pytest.raises(FinetuneRefused, match="nothing written"):
        finetune(images, np.zeros(len(images), dtype=np.int64), out, weights=weights_dir(),
                 steps=6, replay=0.0, recipe=CORRECTIONS.replace(lr=0.05, augment=False),
                 limit_mnist_test=TEST_IMAGES, data_dir=mnist_dir, int8=False,
                 progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_out_must_be_a_new_directory_and_corrections_usable(corrections, tmp_path):
    images, labels = corrections
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not an empty directory"):
        finetune(images, labels, tmp_path / "full", weights=weights_dir(), progress=False)
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="labels must be digits"):
        finetune(images, labels + 10, tmp_path / "a", weights=weights_dir(), progress=False)
    with pytest.raises(DataError, match="no corrections to learn from"):
        finetune(images[:0], labels[:0], tmp_path / "b", weights=weights_dir(), progress=False)
    with pytest.raises(UsageError, match="own"):
        finetune(images, labels, weights_dir(), weights=weights_dir(), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_split_is_seeded_by_correction():
    groups = np.array([1, 2, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9, 10])  # numbers: 2 and 5
    first = split_corrections(groups, 0.3, seed=7)
    again = split_corrections(groups, 0.3, seed=7)
    other = split_corrections(groups, 0.3, seed=8)
    assert np.array_equal(first.held_out, again.held_out)
    assert len(np.unique(groups[first.held_out])) == 3  # 30% of 10 corrections
    assert not np.array_equal(first.held_out, other.held_out)
    assert sorted([*first.train, *first.held_out]) == list(range(len(groups)))
    for split in (first, other):  # a number's digits stay on one side
        assert not set(groups[split.train]) & set(groups[split.held_out])
    assert len(split_corrections(np.arange(2), 0.1, 0).held_out) == 1  # at least one
    assert len(split_corrections(np.arange(5), 0.0, 0).held_out) == 0
    with pytest.raises(UsageError):
        split_corrections(groups, 1.0, 0)


def test_training_mix_repeats_corrections_and_replays_mnist():
    images = np.full((3, 28, 28), 7, np.uint8)
    pool = (np.zeros((50, 28, 28), np.uint8), np.arange(50) % 10)
    x, y, counts = training_mix(images, np.array([1, 2, 3]), pool, total=40, replay=3.0, seed=0)
    assert x.shape == (40, 28, 28) and y.shape == (40,)
    assert counts["correction_images"] == 10 and counts["mnist_replay_images"] == 30
    assert (x[:10] == 7).all() and (x[10:] == 0).all()
    assert sorted(np.bincount(y[:10], minlength=4)[1:]) == [3, 3, 4]  # each repeated evenly
    assert counts["mnist_distinct"] == 30
    with pytest.raises(DataError):
        training_mix(images[:0], np.array([]), pool, total=40, replay=1.0, seed=0)


def test_a_given_alpha_moves_the_weights_that_far(corrections, mnist_dir, tmp_path):
    from safetensors.torch import load_file
    images, labels = corrections
    whole, half = tmp_path / "whole", tmp_path / "half"
    common = {"weights": weights_dir(), "steps": 2, "limit_mnist_test": 100,
              "data_dir": mnist_dir, "progress": False, "int8": False, "max_mnist_drop": 5}
    finetune(images, labels, whole, alpha=1.0, **common)
    result = finetune(images, labels, half, alpha=0.5, **common)
    assert result.summary["interpolation"]["alpha"] == 0.5
    assert result.summary["interpolation"]["chosen_by"] == "--interpolate"
    base, tuned, mixed = (load_file(str(d / "vgg8c.safetensors"))
                          for d in (weights_dir(), whole, half))
    key = next(k for k, v in base.items() if v.is_floating_point() and v.numel() > 100)
    expected = (base[key].float() + tuned[key].float()) / 2
    assert (mixed[key].float() - expected).abs().max() < 2e-3  # fp16 storage rounds
    assert not (mixed[key].float() - tuned[key].float()).abs().max() < 1e-6



def test_distilling_finetune_records_it_and_stays_closer_to_the_base(corrections, mnist_dir,
                                                                    tmp_path):
    """With distillation on the replay images, the members move less from the base than
    without, on MNIST validation digits (the answers distillation is there to keep)."""
    from digitrec.models import load_ensemble
    from digitrec.training.loop import predict_proba
    images, labels = corrections
    common = {"weights": weights_dir(), "steps": 4, "limit_mnist_test": 100, "alpha": 1.0,
              "data_dir": mnist_dir, "progress": False, "int8": False, "max_mnist_drop": 5}
    hot = CORRECTIONS.replace(lr=3e-3)
    finetune(images, labels, tmp_path / "plain", recipe=hot, **common)
    finetune(images, labels, tmp_path / "kept", recipe=hot.replace(distill=5.0), **common)
    card = json.loads((tmp_path / "kept" / "vgg8c.json").read_text())
    assert card["hyperparameters"]["distill"] == 5.0
    from digitrec.data.mnist import load_mnist
    val_x = load_mnist(mnist_dir).split("val")[0][200:1200]
    base = predict_proba(load_ensemble(weights_dir())[0], val_x)
    moved = {name: np.abs(predict_proba(load_ensemble(tmp_path / name)[0], val_x) - base).sum()
             for name in ("plain", "kept")}
    assert moved["kept"] < moved["plain"], moved
