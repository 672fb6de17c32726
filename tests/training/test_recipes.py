"""Recipes are data: the named ones hold today's settings, the CLI builds from them, and the
one loop (`fit`) runs each kind (fractional epochs, SGD, no per-epoch validation)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from digitrec.cli import ARCHITECTURES, BUNDLED_MEMBERS, build_parser, main
from digitrec.training.recipes import (
    BUNDLED,
    COMPARE_MLP,
    COMPARE_QUICK,
    FAST,
    FINE_TUNE,
    TRAIN,
    Recipe,
    fine_tuning,
)


def test_cli_constants_match_the_registry_and_the_bundled_recipes():
    from digitrec.models import list_models
    assert BUNDLED_MEMBERS == tuple(BUNDLED)
    assert ARCHITECTURES == tuple(list_models())
    assert all(recipe.architecture in ARCHITECTURES for recipe in BUNDLED.values())
    assert set(FINE_TUNE) <= set(BUNDLED)


def test_train_flag_defaults_are_the_train_recipe():
    args = build_parser().parse_args(["train", "--model", "cnnbn"])
    for flag in ("batch_size", "lr", "seed", "augment", "elastic", "aug_strength",
                 "real_input"):
        assert getattr(args, flag) == getattr(TRAIN, flag), flag


def test_recipes_module_does_not_import_torch():
    code = ("import sys, digitrec.training.recipes, digitrec.cli.train; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_named_recipes_hold_the_recorded_settings():
    assert (FAST.architecture, FAST.epochs, FAST.optimizer, FAST.lr, FAST.label_smoothing,
            FAST.augment, FAST.validate_each_epoch) == ("fastnet", 1.5, "sgd", 0.2, 0.1,
                                                        False, False)
    assert {n: (r.architecture, r.epochs, r.seed, r.aug_strength, r.elastic)
            for n, r in BUNDLED.items()} == {"cnnbn": ("cnnbn", 25, 0, 0.6, False),
                                             "vgg8b": ("vgg8", 11, 1, 0.7, True),
                                             "vgg8c": ("vgg8", 8, 2, 0.8, False)}
    rounds = fine_tuning(BUNDLED["vgg8b"], "out/vgg8b.safetensors")
    assert [(r.epochs, r.seed, r.lr, r.real_input, r.init, r.elastic) for r in rounds] == [
        (2, 11, 1e-3, 0.5, "out/vgg8b.safetensors", True),
        (2, 21, 5e-4, 0.5, "out/vgg8b.safetensors", True)]
    assert fine_tuning(TRAIN, "x") == []
    for recipe in (COMPARE_MLP, COMPARE_QUICK):
        assert not recipe.augment and recipe.label_smoothing == 0 and recipe.optimizer == "adamw"


def test_recipes_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TRAIN.epochs = 3
    for bad in ({"optimizer": "adam"}, {"epochs": 0}, {"batch_size": 0}, {"lr": -1},
                {"real_input": float("nan")}):
        with pytest.raises(ValueError):
            TRAIN.replace(**bad)
    assert Recipe("x", "cnn1").to_dict()["architecture"] == "cnn1"


def test_bad_flags_are_usage_errors(tmp_path, capsys):
    for flags in (["--model", "cnn1", "--batch-size", "0"], ["--fast", "--epochs", "-1"],
                  ["--model", "cnn1", "--limit", "-5"], ["--model", "nope"]):
        assert main(["train", *flags, "--out", str(tmp_path)]) == 2, flags
        assert "digitrec train: error:" in capsys.readouterr().err
    assert main(["train-ensemble", "--members", "vgg8b", "nope", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())  # nothing was trained or written


def test_train_ensemble_fine_tunes_each_bundled_member(monkeypatch, tmp_path, capsys):
    import digitrec.training.loop
    calls = []

    class Result:
        card = {"test_accuracy": 0.99, "training_seconds": 1.0}

    def fake_train_and_save(recipe, out, half=False, name=None, **run):
        calls.append((name, recipe.architecture, recipe.init, recipe.real_input, recipe.epochs))
        return Result()

    monkeypatch.setattr(digitrec.training.loop, "train_and_save", fake_train_and_save)
    assert main(["train-ensemble", "--members", "vgg8b", "--out", str(tmp_path)]) == 0
    tuned = str(tmp_path / "vgg8b.safetensors")
    assert calls == [("vgg8b", "vgg8", None, 0.0, 11),
                     ("vgg8b", "vgg8", tuned, 0.5, 2), ("vgg8b", "vgg8", tuned, 0.5, 2)]
    calls.clear()
    assert main(["train-ensemble", "--members", "vgg8b", "--epochs", "1",
                 "--out", str(tmp_path)]) == 0
    assert calls == [("vgg8b", "vgg8", None, 0.0, 1)]  # --epochs: a quick run, no fine-tuning
    calls.clear()
    assert main(["train-ensemble", "--members", "cnn1", "--lr", "1e-3", "--seed", "4",
                 "--out", str(tmp_path)]) == 0  # an architecture: TRAIN with the flags
    assert calls == [("cnn1", "cnn1", None, 0.0, 15)]


def test_fit_runs_fractional_epochs_with_sgd_and_validates_only_when_asked(mnist):
    import torch

    from digitrec.models import create_model
    from digitrec.training.loop import fit
    images, labels = mnist.split("train")
    recipe = FAST.replace(epochs=1.5, batch_size=64)
    torch.manual_seed(0)
    history = fit(create_model("fastnet"), images[:256], labels[:256], recipe, progress=False)
    assert [(h["epoch"], h["steps"], h["val_accuracy"]) for h in history] == [
        (1, 4, None), (1.5, 6, None)]
    assert history[-1]["seconds"] >= history[0]["seconds"] > 0
    val = mnist.split("val")
    history = fit(create_model("cnn1"), images[:128], labels[:128],
                  COMPARE_QUICK.replace(architecture="cnn1", epochs=2),
                  val=(val[0][:100], val[1][:100]), progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 <= h["val_accuracy"] <= 1 for h in history)


def test_fast_card_keeps_its_fields(mnist):
    from digitrec.training.loop import train_fast
    card = train_fast(epochs=1, limit=256, threads=1, progress=False).card
    assert card["recipe"] == "fast" and card["hyperparameters"]["optimizer"] == "sgd"
    assert card["hyperparameters"]["epochs"] == 1 and card["hyperparameters"]["limit"] == 256
    assert card["time_to_test_accuracy_seconds"] >= card["training_seconds"] > 0
    assert 0 <= card["val_accuracy"] <= 1 and card["history"][-1]["val_accuracy"] is not None
