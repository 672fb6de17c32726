"""The one training loop. `fit` trains a model on uint8 images as a `Recipe` says (AdamW or
SGD-Nesterov with a one-cycle schedule, optional batched augmentation, label smoothing);
`train` wraps it for one registered architecture on MNIST (data, real-input renderings,
fine-tuning start, test evaluation, model card) and `train_and_save` writes the result.
Every way the project trains goes through here: `digitrec train` (TRAIN), `train --fast`
(FAST), `train-ensemble` (BUNDLED + FINE_TUNE) and `compare` (COMPARE_MLP, COMPARE_QUICK)."""

from __future__ import annotations

import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from digitrec import __version__
from digitrec.data.mnist import file_checksums, load_mnist
from digitrec.models import MEAN, STD, create_model, load_model, save_model, to_tensor
from digitrec.training.augment import augment_batch
from digitrec.training.recipes import FAST, Recipe

LOG_EVERY = 50  # read the loss back every this many steps (and at the end of each epoch)


@torch.inference_mode()
def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Softmax probabilities (N, 10) of a model (or an Ensemble) over uint8 images."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        logits_or_p = model(to_tensor(images[start:start + batch_size]))
        if not getattr(model, "returns_probabilities", False):
            logits_or_p = torch.softmax(logits_or_p, dim=1)
        out.append(logits_or_p)
    return torch.cat(out).numpy()


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a model on uint8 images."""
    return float((predict_proba(model, images).argmax(1) == labels).mean())


def real_input_set(images: np.ndarray, labels: np.ndarray, count: int,
                   seed: int = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`count` training digits drawn with a random pen and size (`synth.pen_and_size`) and
    read back through `preprocess`: what the models see of fat, hairline and tiny writing."""
    from digitrec.data.synth import pen_and_size
    from digitrec.errors import InputError
    from digitrec.preprocess import preprocess
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=count, replace=count > len(images))
    out_x, out_y = [], []
    for i in tqdm(picks, desc="real-input set", disable=not progress, leave=False,
                  file=sys.stderr):
        try:
            out_x.append(preprocess(pen_and_size(images[i], rng)))
        except InputError:  # a digit that vanished when shrunk: nothing to learn from
            continue
        out_y.append(labels[i])
    return np.stack(out_x), np.array(out_y, dtype=labels.dtype)


def one_cycle(optimizer: torch.optim.Optimizer, lr: float,
              total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule peaking at `lr` after a quarter of the steps; a constant `lr` when
    there are too few steps for a warm-up and an annealing phase."""
    if total_steps >= 8:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                   pct_start=0.25)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over the model's parameters, at its peak learning rate."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def fit(model: nn.Module, images: np.ndarray, labels: np.ndarray, recipe: Recipe,
        val: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True) -> list[dict]:
    """Train `model` in place on uint8 `images` (N, 28, 28) as `recipe` says; one history entry
    per pass over the data (the last may be a fraction of one).

    Each entry: "epoch" (passes done, e.g. 1.5), "steps", "train_loss" and "train_accuracy"
    (of the batches read back: every LOG_EVERY-th and each epoch's last), "val_accuracy" on
    `val` when given (None otherwise), and "seconds" of optimisation so far, validation excluded.
    """
    generator = torch.Generator().manual_seed(recipe.seed)  # batch order and augmentation
    x_all = torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1)  # resident uint8
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    shift, scale = MEAN * 255.0, 1.0 / (STD * 255.0)  # uint8 → normalised, in place

    optimizer = make_optimizer(model, recipe)
    batch_size = recipe.batch_size
    steps_per_epoch = math.ceil(len(x_all) / batch_size)
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    schedule = one_cycle(optimizer, recipe.lr, total_steps)

    history, step, seconds = [], 0, 0.0
    for epoch in range(1, math.ceil(total_steps / steps_per_epoch) + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        steps = min(steps_per_epoch, total_steps - step)
        losses, hits = [], []
        bar = tqdm(range(steps), desc=f"{recipe.name} epoch {epoch}/{math.ceil(recipe.epochs)}",
                   disable=not progress, leave=False, file=sys.stderr)
        for i in bar:
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = x_all[idx].float()
            if recipe.augment:  # a linear warp: the same on 0-255 as on normalised pixels
                x = augment_batch(x, generator, elastic=recipe.elastic,
                                  strength=recipe.aug_strength)
            x = x.sub_(shift).mul_(scale)
            y = y_all[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % LOG_EVERY == 0 or i == steps - 1:  # the only reads back from the graph
                losses.append(loss.item())
                hits.append(float((logits.argmax(1) == y).float().mean()))
                bar.set_postfix(loss=f"{losses[-1]:.4f}", acc=f"{hits[-1]:.4f}")
            step += 1
        bar.close()
        seconds += time.perf_counter() - started
        val_acc = accuracy(model, *val) if val is not None else None
        done = step / steps_per_epoch
        history.append({"epoch": int(done) if done.is_integer() else round(done, 2), "steps": step,
                        "train_loss": float(np.mean(losses)),
                        "train_accuracy": float(np.mean(hits)),
                        "val_accuracy": val_acc, "seconds": round(seconds, 2)})
        if progress:
            print(f"{recipe.name} ({recipe.architecture}) epoch {history[-1]['epoch']:g}: "
                  f"loss {history[-1]['train_loss']:.4f} "
                  f"train {history[-1]['train_accuracy']:.4f}"
                  f"{'' if val_acc is None else f' val {val_acc:.4f}'} ({seconds:.0f}s)",
                  file=sys.stderr)
    return history


@dataclass
class TrainResult:
    model: nn.Module
    card: dict
    history: list[dict] = field(default_factory=list)


def train(recipe: Recipe, data_dir: str | Path | None = None, limit: int | None = None,
          full: bool = False, threads: int | None = None, progress: bool = True,
          evaluate_test: bool = True) -> TrainResult:
    """Train `recipe.architecture` on MNIST and return the model with its card.

    Trains on the first 55,000 training images and validates on the last 5,000; with `full`, on
    all 60,000 (validation is then not held out and is recorded as such). `limit` caps the
    training set. The card records the recipe, the accuracies, the seconds of optimisation, and
    `time_to_test_accuracy_seconds`: those plus the test evaluation (validation excluded).
    """
    start, start_card = load_model(recipe.init) if recipe.init else (None, {})
    if start is not None and start_card["architecture"] != recipe.architecture:
        raise ValueError(f"--init {recipe.init} is a {start_card['architecture']}, "
                         f"not a {recipe.architecture}")  # before the slow work, not after
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)  # model initialisation (fit seeds the batch order)
    mnist = load_mnist(data_dir)
    train_x, train_y = mnist.split("full" if full else "train")
    if limit:
        train_x, train_y = train_x[:limit], train_y[:limit]
    if recipe.real_input > 0:
        extra_x, extra_y = real_input_set(train_x, train_y, round(recipe.real_input * len(train_x)),
                                          recipe.seed, progress)
        train_x, train_y = np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y])

    model = create_model(recipe.architecture)
    if start is not None:
        model.load_state_dict(start.state_dict())
    val = mnist.split("val")
    history = fit(model, train_x, train_y, recipe, progress=progress,
                  val=val if recipe.validate_each_epoch else None)
    seconds = history[-1]["seconds"]

    started = time.perf_counter()
    test_acc = accuracy(model, *mnist.split("test")) if evaluate_test else None
    to_test = seconds + time.perf_counter() - started
    val_acc = history[-1]["val_accuracy"]
    if val_acc is None and not full:
        val_acc = history[-1]["val_accuracy"] = accuracy(model, *val)
    card = {
        "recipe": recipe.name,
        "hyperparameters": {**recipe.to_dict(), "limit": limit, "full": full,
                            "steps": history[-1]["steps"]},
        "trained_on": f"{len(train_x)} images ({'all 60,000' if full else 'first 55,000'}"
                      f"{', limited' if limit else ''}"
                      f"{', plus real-input renderings of them' if recipe.real_input else ''})",
        "val_accuracy": val_acc,
        "val_held_out": not full,
        "test_accuracy": test_acc,
        "history": history,
        "training_seconds": round(seconds, 2),
        "time_to_test_accuracy_seconds": round(to_test, 2) if evaluate_test else None,
        **_lineage(start_card, seconds),
        "data_sha256": file_checksums(data_dir),
        "versions": {"digitrec": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "command": shlex.join(["digitrec", *sys.argv[1:]]) if sys.argv else "",
    }
    if progress:
        print(f"{recipe.name} ({recipe.architecture}): {history[-1]['steps']} steps in "
              f"{seconds:.1f}s, test accuracy "
              f"{'not measured' if test_acc is None else f'{test_acc:.4f}'}", file=sys.stderr)
    return TrainResult(model.eval(), card, history)


def _lineage(start_card: dict, seconds: float) -> dict:
    """Card fields of a fine-tuned model: what it started from, and the total training time."""
    if not start_card:
        return {}
    before = start_card.get("total_training_seconds", start_card.get("training_seconds", 0.0))
    keep = ("command", "training_seconds", "val_accuracy", "test_accuracy", "trained_on")
    return {"fine_tuned_from": {k: start_card.get(k) for k in keep},
            "total_training_seconds": round(before + seconds, 1)}


def train_and_save(recipe: Recipe, out: str | Path, half: bool = False, name: str | None = None,
                   **run) -> TrainResult:
    """Train (`run`: the settings of `train`) and write OUT/NAME.safetensors + OUT/NAME.json
    (NAME defaults to the architecture)."""
    result = train(recipe, **run)
    save_model(result.model, out, name or recipe.architecture, result.card, half=half)
    return result


def train_fast(epochs: float = FAST.epochs, seed: int = FAST.seed, **run) -> TrainResult:
    """`train(FAST)`: the `digitrec train --fast` recipe with another length or seed."""
    return train(FAST.replace(epochs=epochs, seed=seed), **run)
