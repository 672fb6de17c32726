"""Training: a short real run learns, is reproducible with --seed, and writes weights + card."""

from __future__ import annotations

import json

import numpy as np
import pytest
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


def test_distillation_loss_is_zero_on_agreement_and_only_on_kept_rows():
    from digitrec.training.loop import distillation_loss
    logits = torch.randn(6, 10)
    keep = torch.tensor([True, True, False, False, True, False])
    assert distillation_loss(logits, logits.clone(), keep, 2.0).item() < 1e-6
    other = torch.randn(6, 10)
    assert distillation_loss(logits, other, keep, 2.0).item() > 0
    changed = other.clone()
    changed[~keep] = torch.randn(3, 10) * 10  # rows not kept do not count
    assert torch.isclose(distillation_loss(logits, other, keep, 2.0),
                         distillation_loss(logits, changed, keep, 2.0))
    assert distillation_loss(logits, other, torch.zeros(6, dtype=torch.bool), 2.0).item() == 0


def test_distillation_keeps_the_starting_models_answers(mnist, tmp_path):
    """Trained toward wrong labels (every digit called 3) from the bundled cnnbn, a run that
    distils from its start keeps far more of the start's answers than one that does not."""
    from conftest import weights_dir

    import digitrec.training.loop as loop
    recipe = TRAIN.replace(architecture="cnnbn", epochs=1, batch_size=64, lr=1e-2, seed=0,
                           augment=False, init=str(weights_dir() / "cnnbn.safetensors"))
    images, labels = mnist.split("train")
    wrong = np.full(256, 3, dtype=labels.dtype)
    kept = {}
    for distill in (0.0, 5.0):
        model = loop.create_model("cnnbn")
        start, _ = loop.load_model(recipe.init)
        model.load_state_dict(start.state_dict())
        loop.fit(model, images[:256], wrong, recipe.replace(distill=distill, epochs=3),
                 progress=False, teacher=start if distill else None,
                 keep=np.ones(256, bool) if distill else None)
        val_x, val_y = mnist.split("val")
        kept[distill] = accuracy(model, val_x[:500], val_y[:500])
    assert kept[5.0] > kept[0.0] + 0.1, kept
    with pytest.raises(ValueError):
        loop.fit(loop.create_model("cnnbn"), images[:64], wrong[:64],
                 recipe.replace(distill=1.0), progress=False)


def test_distill_needs_starting_weights(tmp_path, capsys):
    assert main(["train", "--model", "cnn1", "--distill", "1", "--limit", "64",
                 "--out", str(tmp_path)]) == 2
    assert "--distill distils from the starting weights" in capsys.readouterr().err
