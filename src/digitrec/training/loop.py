"""Train one registered model on MNIST: in-memory uint8 data, batched augmentation, AdamW with a
one-cycle schedule, tqdm progress, per-epoch validation, safetensors + model card output."""

from __future__ import annotations

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
from digitrec.data.mnist import MNIST, file_checksums, load_mnist
from digitrec.models import MEAN, STD, create_model, load_model, save_model, to_tensor
from digitrec.training.augment import augment_batch


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


@dataclass
class TrainResult:
    model: nn.Module
    card: dict
    history: list[dict] = field(default_factory=list)


def _setup(seed: int, threads: int | None, data_dir: str | None, full: bool,
           limit: int | None) -> tuple[MNIST, torch.Generator, torch.Tensor, torch.Tensor]:
    """Seed torch, set threads, load MNIST; the training images as resident uint8 tensors."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    mnist = load_mnist(data_dir)
    train_x, train_y = mnist.split("full" if full else "train")
    if limit:
        train_x, train_y = train_x[:limit], train_y[:limit]
    x_all = torch.from_numpy(np.array(train_x)).unsqueeze(1)  # uint8, resident in memory
    y_all = torch.from_numpy(train_y.astype(np.int64))
    return mnist, generator, x_all, y_all


def train(arch: str, epochs: int = 15, batch_size: int = 128, lr: float = 3e-3,
          seed: int = 0, augment: bool = True, elastic: bool = False, aug_strength: float = 1.0,
          limit: int | None = None,
          full: bool = False, label_smoothing: float = 0.05, data_dir: str | None = None,
          threads: int | None = None, progress: bool = True, init: str | None = None,
          real_input: float = 0.0) -> TrainResult:
    """Train `arch` and return the model with its card (hyper-parameters, accuracies, timing).

    Trains on the first 55,000 training images and validates on the last 5,000; with `full`, on all
    60,000 (validation is then not held out and is recorded as such). `limit` caps the training set.
    `init` starts from saved weights (fine-tuning); `real_input` adds that fraction of extra
    images rendered with a random pen and size and preprocessed (`real_input_set`).
    """
    start, start_card = load_model(init) if init else (None, {})
    if init and start_card["architecture"] != arch:  # fail before the slow work, not after
        raise ValueError(f"--init {init} is a {start_card['architecture']}, not a {arch}")
    mnist, generator, x_all, y_all = _setup(seed, threads, data_dir, full, limit)
    val_x, val_y = mnist.split("val")
    if real_input > 0:
        extra_x, extra_y = real_input_set(x_all[:, 0].numpy(), y_all.numpy(),
                                          round(real_input * len(x_all)), seed, progress)
        x_all = torch.cat([x_all, torch.from_numpy(extra_x).unsqueeze(1)])
        y_all = torch.cat([y_all, torch.from_numpy(extra_y.astype(np.int64))])

    model = create_model(arch)
    if start is not None:
        model.load_state_dict(start.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = (len(x_all) + batch_size - 1) // batch_size
    total_steps = epochs * steps_per_epoch
    schedule = one_cycle(optimizer, lr, total_steps)

    history, started = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{arch} epoch {epoch}/{epochs}",
                   disable=not progress, leave=False, file=sys.stderr)
        for step in bar:
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = x_all[idx].float() / 255.0
            if augment:
                x = augment_batch(x, generator, elastic=elastic, strength=aug_strength)
            x = (x - MEAN) / STD
            y = y_all[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        val_acc = accuracy(model, val_x, val_y)
        history.append({"epoch": epoch, "train_loss": loss_sum / seen,
                        "train_accuracy": correct / seen, "val_accuracy": val_acc,
                        "seconds": time.perf_counter() - started})
        if progress:
            print(f"{arch} epoch {epoch}/{epochs}: loss {loss_sum / seen:.4f} "
                  f"train {correct / seen:.4f} val {val_acc:.4f} "
                  f"({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    seconds = time.perf_counter() - started
    test_acc = accuracy(model, *mnist.split("test"))
    card = {
        "hyperparameters": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                            "augment": augment, "elastic": elastic,
                            "aug_strength": aug_strength, "limit": limit,
                            "label_smoothing": label_smoothing, "optimizer": "AdamW+OneCycle",
                            "weight_decay": 5e-4, "init": init, "real_input": real_input},
        "trained_on": f"{len(x_all)} images ({'all 60,000' if full else 'first 55,000'}"
                      f"{', limited' if limit else ''}"
                      f"{', plus real-input renderings of them' if real_input else ''})",
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "val_held_out": not full,
        "test_accuracy": test_acc,
        "history": history,
        "training_seconds": round(seconds, 1),
        **_lineage(start_card, seconds),
        "data_sha256": file_checksums(data_dir),
        "versions": {"digitrec": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "command": shlex.join(["digitrec", *sys.argv[1:]]) if sys.argv else "",
    }
    return TrainResult(model.eval(), card, history)


def _lineage(start_card: dict, seconds: float) -> dict:
    """Card fields of a fine-tuned model: what it started from, and the total training time."""
    if not start_card:
        return {}
    before = start_card.get("total_training_seconds", start_card.get("training_seconds", 0.0))
    keep = ("command", "training_seconds", "val_accuracy", "test_accuracy", "trained_on")
    return {"fine_tuned_from": {k: start_card.get(k) for k in keep},
            "total_training_seconds": round(before + seconds, 1)}


def train_and_save(arch: str, out: str | Path, half: bool = False, name: str | None = None,
                   **kwargs) -> TrainResult:
    """Train and write OUT/NAME.safetensors + OUT/NAME.json (NAME defaults to the arch)."""
    result = train(arch, **kwargs)
    save_model(result.model, out, name or arch, result.card, half=half)
    return result


def train_fast(arch: str = "fastnet", epochs: float = 1.5, batch_size: int = 128,
               lr: float = 0.2, seed: int = 0, limit: int | None = None, full: bool = False,
               label_smoothing: float = 0.1, data_dir: str | None = None,
               threads: int | None = None, progress: bool = True,
               evaluate_test: bool = True) -> TrainResult:
    """The `train --fast` recipe: a lean BN net, uint8 data resident in memory, no augmentation
    (it does not pay this short), SGD-Nesterov with a one-cycle schedule and label smoothing.

    Reaches 99% MNIST test accuracy in 1.5 epochs; the card records the wall time from the first
    step to the end of the test evaluation (`time_to_test_accuracy_seconds`)."""
    mnist, generator, x_all, y_all = _setup(seed, threads, data_dir, full, limit)

    model = create_model(arch)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    total_steps = max(1, round(epochs * len(x_all) / batch_size))
    schedule = one_cycle(optimizer, lr, total_steps)
    shift, scale = MEAN * 255.0, 1.0 / (STD * 255.0)

    started = time.perf_counter()
    model.train()
    order, position, loss_sum, seen = torch.randperm(len(x_all), generator=generator), 0, 0.0, 0
    for step in tqdm(range(total_steps), desc=f"{arch} --fast", disable=not progress,
                     leave=False, file=sys.stderr):
        if position >= len(order):  # next epoch
            order, position = torch.randperm(len(x_all), generator=generator), 0
        idx = order[position:position + batch_size]
        position += batch_size
        x = x_all[idx].float().sub_(shift).mul_(scale)
        loss = F.cross_entropy(model(x), y_all[idx], label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == total_steps - 1:
            loss_sum, seen = loss_sum + loss.item(), seen + 1
    training_seconds = time.perf_counter() - started
    model.eval()
    test_acc = accuracy(model, *mnist.split("test")) if evaluate_test else None
    to_target = time.perf_counter() - started
    val_acc = None if full else accuracy(model, *mnist.split("val"))
    card = {
        "recipe": "fast",
        "hyperparameters": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                            "augment": False, "limit": limit, "label_smoothing": label_smoothing,
                            "optimizer": "SGD-Nesterov(0.9)+OneCycle", "weight_decay": 5e-4,
                            "steps": total_steps},
        "trained_on": f"{len(x_all)} images ({'all 60,000' if full else 'first 55,000'}"
                      f"{', limited' if limit else ''})",
        "val_accuracy": val_acc,
        "val_held_out": not full,
        "test_accuracy": test_acc,
        "history": [{"epoch": epochs, "train_loss_sampled": loss_sum / max(seen, 1),
                     "val_accuracy": val_acc, "seconds": training_seconds}],
        "training_seconds": round(training_seconds, 2),
        "time_to_test_accuracy_seconds": round(to_target, 2) if evaluate_test else None,
        "data_sha256": file_checksums(data_dir),
        "versions": {"digitrec": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "command": shlex.join(["digitrec", *sys.argv[1:]]) if sys.argv else "",
    }
    if progress:
        print(f"{arch} --fast: {total_steps} steps in {training_seconds:.1f}s, test accuracy "
              f"{test_acc if test_acc is None else f'{test_acc:.4f}'}", file=sys.stderr)
    return TrainResult(model, card, card["history"])
