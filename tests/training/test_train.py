"""Training: a short real run learns, is reproducible with --seed, and writes weights + card."""

from __future__ import annotations

import json

import numpy as np
import torch

from digitrec.cli import main
from digitrec.training.augment import augment_batch
from digitrec.training.loop import accuracy, train
from digitrec.training.recipes import TRAIN


def test_one_epoch_on_3000_images_reaches_90_percent(mnist):
    recipe = TRAIN.replace(architecture="cnn1", epochs=1, batch_size=64, lr=3e-3, augment=False,
                           label_smoothing=0.0)
    result = train(recipe, limit=3000, threads=2, progress=False)
    images, labels = mnist.split("val")  # 1,000 images the model never saw
    assert accuracy(result.model, images[:1000], labels[:1000]) >= 0.90


def test_seed_makes_training_reproducible(mnist):
    recipe = TRAIN.replace(architecture="cnnbn", epochs=1, seed=7)
    runs = [train(recipe, limit=512, threads=1, progress=False) for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_augmentation_keeps_shape_and_moves_pixels(mnist):
    x = torch.from_numpy(mnist.test_images[:32].astype(np.float32) / 255).unsqueeze(1)
    generator = torch.Generator().manual_seed(0)
    for elastic in (False, True):
        y = augment_batch(x, generator, elastic=elastic)
        assert y.shape == x.shape
        assert (y - x).abs().mean() > 0.02  # actually transformed
        assert abs(float(y.sum() / x.sum()) - 1) < 0.35  # ink mostly kept in frame


def test_cli_train_writes_safetensors_and_model_card(mnist, tmp_path, capsys):
    assert main(["train", "--model", "cnnbn", "--epochs", "1", "--limit", "256",
                 "--threads", "1", "--out", str(tmp_path)]) == 0
    card = json.loads((tmp_path / "cnnbn.json").read_text())
    assert (tmp_path / "cnnbn.safetensors").stat().st_size > 10_000
    assert card["hyperparameters"]["epochs"] == 1 and card["hyperparameters"]["limit"] == 256
    assert 0 <= card["test_accuracy"] <= 1 and card["training_seconds"] > 0
    assert set(card["data_sha256"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert card["versions"]["torch"].startswith("2.13")
    assert "test accuracy" in capsys.readouterr().out


def test_real_input_set_is_preprocessed_and_labelled(mnist):
    from digitrec.training.loop import real_input_set
    images, labels = mnist.split("train")
    x, y = real_input_set(images[:200], labels[:200], 60, seed=3, progress=False)
    assert x.shape[1:] == (28, 28) and x.dtype == np.uint8 and len(x) == len(y) >= 55
    assert set(np.unique(y)) <= set(range(10)) and x.max() == 255  # normalised to full ink


def test_fine_tuning_starts_from_the_given_weights(mnist, tmp_path):
    assert main(["train", "--model", "cnnbn", "--epochs", "1", "--limit", "256",
                 "--threads", "1", "--out", str(tmp_path), "--name", "start"]) == 0
    start = tmp_path / "start.safetensors"
    assert main(["train", "--model", "cnnbn", "--epochs", "1", "--limit", "128", "--lr", "1e-9",
                 "--init", str(start), "--real-input", "0.25", "--threads", "1",
                 "--out", str(tmp_path), "--name", "tuned"]) == 0
    from digitrec.models import load_model
    (a, _), (b, card) = load_model(start), load_model(tmp_path / "tuned.safetensors")
    weights = [k for k, v in a.state_dict().items() if v.is_floating_point() and "running" not in k]
    assert all(torch.allclose(a.state_dict()[k], b.state_dict()[k], atol=1e-4) for k in weights)
    assert card["hyperparameters"]["init"] == str(start)
    assert card["hyperparameters"]["real_input"] == 0.25
    assert "real-input" in card["trained_on"]
    assert card["fine_tuned_from"]["training_seconds"] > 0
    assert card["total_training_seconds"] >= card["training_seconds"]


def test_bad_init_and_real_input_are_refused_before_training(mnist, tmp_path, capsys):
    import pytest

    from digitrec.models import BUNDLED_DIR
    bundled = str(BUNDLED_DIR / "cnnbn.safetensors")
    assert main(["train", "--model", "cnn1", "--init", bundled, "--out", str(tmp_path)]) == 2
    assert "is a cnnbn model, not a cnn1" in capsys.readouterr().err
    missing = str(tmp_path / "nope.safetensors")
    assert main(["train", "--model", "cnn1", "--init", missing, "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    for bad in ("-1", "x", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--model", "cnn1", "--real-input", bad])
        assert exit_info.value.code == 2
        assert "must be a number >= 0" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.safetensors"))  # nothing was trained or written
