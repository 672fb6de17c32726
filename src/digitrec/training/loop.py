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
from digitrec.errors import UsageError
from digitrec.models import MEAN, STD, create_model, load_model, save_model, to_tensor
from digitrec.training import checkpoint, distributed
from digitrec.training.augment import augment_batch
from digitrec.training.distributed import Context
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


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, keep: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """KL(teacher || student) at `temperature` (x T², as Hinton et al. scale it), averaged over
    the rows where `keep` is True (0 when there are none)."""
    if not keep.any():
        return logits.sum() * 0.0
    t = temperature
    per_row = F.kl_div(F.log_softmax(logits[keep] / t, dim=1),
                       F.log_softmax(teacher_logits[keep] / t, dim=1),
                       log_target=True, reduction="none").sum(dim=1)
    return per_row.mean() * t * t


def fit(model: nn.Module, images: np.ndarray, labels: np.ndarray, recipe: Recipe,
        val: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True,
        ctx: Context | None = None, checkpoints: checkpoint.Policy | None = None,
        teacher: nn.Module | None = None, keep: np.ndarray | None = None) -> list[dict]:
    """Train `model` in place on uint8 `images` (N, 28, 28) as `recipe` says; one history entry
    per pass over the data (the last may be a fraction of one).

    With `recipe.distill` > 0, `teacher` (frozen; the weights the run started from) is read on
    every batch too, and the loss adds `distill` x its distillation loss on the images where
    `keep` (bool, one per image) is True: the old images, whose old answers are to be kept.

    Each entry: "epoch" (passes done, e.g. 1.5), "steps", "train_loss" and "train_accuracy"
    (of the batches read back: every LOG_EVERY-th and each epoch's last), "val_accuracy" on
    `val` when given (None otherwise), and "seconds" of optimisation so far, validation excluded.

    With several ranks (`ctx`, default `distributed.current()`) each trains on its shard of the
    same permutation with batch / world size images a step under DistributedDataParallel, so a
    step sees the single-process batch; metrics are averaged over the ranks. `checkpoints` says
    when to checkpoint (rank 0 writes) and whether to resume from the last checkpoint.
    """
    ctx = ctx or distributed.current()
    progress = progress and ctx.is_main
    generator = torch.Generator().manual_seed(recipe.seed)  # batch order (the same on each rank)
    augment_rng = (torch.Generator().manual_seed(ctx.rank_seed(recipe.seed)) if ctx.distributed
                   else generator)  # one process: one generator, as always
    x_all = torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1)  # resident uint8
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    shift, scale = MEAN * 255.0, 1.0 / (STD * 255.0)  # uint8 → normalised, in place

    distilling = recipe.distill > 0
    if distilling and (teacher is None or keep is None):
        raise ValueError(f"recipe {recipe.name!r} distils: fit needs a teacher and a keep mask")
    if distilling:
        teacher = teacher.to(ctx.device).eval()
        keep_all = torch.from_numpy(np.asarray(keep, dtype=bool))
    model.to(ctx.device)
    optimizer = make_optimizer(model, recipe)
    batch_size = ctx.per_rank_batch(recipe.batch_size)
    steps_per_epoch = math.ceil(len(x_all) / recipe.batch_size)
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    schedule = one_cycle(optimizer, recipe.lr, total_steps)
    net = ctx.wrap(model)

    history, step, seconds, order, losses, hits = [], 0, 0.0, None, [], []
    run = {"recipe": recipe.to_dict(), "images": len(x_all), "total_steps": total_steps}
    rngs = (generator, augment_rng)
    if checkpoints is not None:
        found = _resume(checkpoints, ctx, run, model, optimizer, schedule, rngs, recipe.seed)
        if found is not None:
            step, order = found.step, found.tensors.get("order")
            history, seconds = found.meta["history"], found.meta["seconds"]
            losses, hits = found.meta["epoch_losses"], found.meta["epoch_hits"]
            if progress:
                print(f"{recipe.name}: resumed from step {step} of {total_steps} "
                      f"({checkpoints.directory})", file=sys.stderr)
    for epoch in range(step // steps_per_epoch + 1, math.ceil(total_steps / steps_per_epoch) + 1):
        if step >= total_steps:
            break
        started = time.perf_counter()
        model.train()
        first = step - (epoch - 1) * steps_per_epoch  # > 0 when resumed mid-epoch
        if order is None or first == 0:
            order, losses, hits = torch.randperm(len(x_all), generator=generator), [], []
        mine = ctx.shard(order)
        steps = min(steps_per_epoch, total_steps - (epoch - 1) * steps_per_epoch)
        bar = tqdm(range(first, steps), desc=f"{recipe.name} epoch {epoch}/"
                   f"{math.ceil(recipe.epochs)}", disable=not progress, leave=False,
                   file=sys.stderr)
        for i in bar:
            idx = mine[i * batch_size:(i + 1) * batch_size]
            x = x_all[idx].float()
            if recipe.augment:  # a linear warp: the same on 0-255 as on normalised pixels
                x = augment_batch(x, augment_rng, elastic=recipe.elastic,
                                  strength=recipe.aug_strength)
            x = x.sub_(shift).mul_(scale).to(ctx.device)
            y = y_all[idx].to(ctx.device)
            logits = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            if distilling:
                with torch.no_grad():
                    teacher_logits = teacher(x)
                loss = loss + recipe.distill * distillation_loss(
                    logits, teacher_logits, keep_all[idx].to(ctx.device),
                    recipe.distill_temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % LOG_EVERY == 0 or i == steps - 1:  # the only reads back from the graph
                loss_value, hit_value = ctx.mean(loss, (logits.argmax(1) == y).float().mean())
                losses.append(loss_value)
                hits.append(hit_value)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", acc=f"{hits[-1]:.4f}")
            step += 1
            if checkpoints is not None and i < steps - 1 and checkpoints.due(step, False, False):
                _checkpoint(checkpoints, ctx, step, model, optimizer, schedule, rngs, order, {
                    **run, "history": history, "epoch_losses": losses, "epoch_hits": hits,
                    "seconds": round(seconds + time.perf_counter() - started, 3)})
            ctx.fault_point(step)
        bar.close()
        seconds += time.perf_counter() - started
        val_acc = None
        if val is not None:
            val_acc = (distributed.accuracy(model, *val, ctx) if ctx.distributed
                       else accuracy(model, *val))
        done = step / steps_per_epoch
        history.append({"epoch": int(done) if done.is_integer() else round(done, 2), "steps": step,
                        "train_loss": float(np.mean(losses)),
                        "train_accuracy": float(np.mean(hits)),
                        "val_accuracy": val_acc, "seconds": round(seconds, 2)})
        if checkpoints is not None and checkpoints.due(step, True, step >= total_steps):
            _checkpoint(checkpoints, ctx, step, model, optimizer, schedule, rngs, None, {
                **run, "history": history, "epoch_losses": [], "epoch_hits": [],
                "seconds": round(seconds, 3)})
        if progress:
            print(f"{recipe.name} ({recipe.architecture}) epoch {history[-1]['epoch']:g}: "
                  f"loss {history[-1]['train_loss']:.4f} "
                  f"train {history[-1]['train_accuracy']:.4f}"
                  f"{'' if val_acc is None else f' val {val_acc:.4f}'} ({seconds:.0f}s)",
                  file=sys.stderr)
    return history


def _checkpoint(policy: checkpoint.Policy, ctx: Context, step: int, model: nn.Module,
                optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                rngs: tuple[torch.Generator, torch.Generator], order: torch.Tensor | None,
                meta: dict) -> None:
    """Checkpoint STEP: every rank hands over its RNG states, rank 0 writes."""
    generator, augment_rng = rngs
    per_rank = {"augment": ctx.gather(augment_rng.get_state()),
                "torch": ctx.gather(torch.get_rng_state())}
    if ctx.device.startswith("cuda"):
        per_rank["cuda"] = ctx.gather(torch.cuda.get_rng_state())
    if not ctx.is_main:
        return
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone()
               for k, v in model.state_dict().items()}
    tensors["rng.order"] = generator.get_state()
    for name, states in per_rank.items():
        tensors.update({f"rng.{name}.{rank}": state for rank, state in enumerate(states)})
    if order is not None:  # mid-epoch: the epoch's permutation, to finish it the same way
        tensors["order"] = order
    meta = {**meta, "world_size": ctx.world_size,
            "optimizer": checkpoint.state_to_tensors(optimizer.state_dict(), "optimizer", tensors),
            "scheduler": checkpoint.state_to_tensors(schedule.state_dict(), "scheduler", tensors)}
    checkpoint.save(policy.directory, step, tensors, meta)


def _resume(policy: checkpoint.Policy, ctx: Context, run: dict, model: nn.Module,
            optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
            rngs: tuple[torch.Generator, torch.Generator],
            seed: int) -> checkpoint.Checkpoint | None:
    """Restore the last complete checkpoint (rank 0 picks it) when resuming, else clear the
    directory for a fresh start; the checkpoint restored, or None."""
    if not policy.resume:
        if ctx.is_main:
            checkpoint.clear(policy.directory)
        return None
    found = checkpoint.latest(policy.directory) if ctx.is_main else None
    step = ctx.broadcast_int(found.step if found is not None else -1)
    if step < 0:
        if ctx.is_main:
            print(f"no complete checkpoint in {policy.directory}: starting afresh",
                  file=sys.stderr)
        return None
    if found is None:
        found = checkpoint.load(policy.directory, step)
    differs = [key for key, value in run.items() if found.meta.get(key) != value]
    if differs:
        raise UsageError(f"cannot resume from {policy.directory}: its checkpoint is of another "
                         f"run ({', '.join(differs)} differ); remove it or start without --resume")
    tensors = found.tensors
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items()
                           if k.startswith("model.")})
    optimizer.load_state_dict(checkpoint.tensors_to_state(found.meta["optimizer"], tensors))
    schedule.load_state_dict(checkpoint.tensors_to_state(found.meta["scheduler"], tensors))
    generator, augment_rng = rngs
    generator.set_state(tensors["rng.order"])
    if found.meta["world_size"] == ctx.world_size:
        augment_rng.set_state(tensors[f"rng.augment.{ctx.rank}"])
        torch.set_rng_state(tensors[f"rng.torch.{ctx.rank}"])
        if f"rng.cuda.{ctx.rank}" in tensors and ctx.device.startswith("cuda"):
            torch.cuda.set_rng_state(tensors[f"rng.cuda.{ctx.rank}"])
    else:  # another world size: the ranks' own streams start afresh, from the step
        if ctx.distributed:
            augment_rng.manual_seed(ctx.rank_seed(seed) + step)
        torch.manual_seed(ctx.rank_seed(seed) + step)
    return found


@dataclass
class TrainResult:
    model: nn.Module
    card: dict
    history: list[dict] = field(default_factory=list)


def train(recipe: Recipe, data_dir: str | Path | None = None, limit: int | None = None,
          full: bool = False, threads: int | None = None, progress: bool = True,
          evaluate_test: bool = True, checkpoints: checkpoint.Policy | None = None,
          ctx: Context | None = None) -> TrainResult:
    """Train `recipe.architecture` on MNIST and return the model with its card.

    Trains on the first 55,000 training images and validates on the last 5,000; with `full`, on
    all 60,000 (validation is then not held out and is recorded as such). `limit` caps the
    training set. The card records the recipe, the accuracies, the seconds of optimisation,
    `time_to_test_accuracy_seconds` (those plus the test evaluation, validation excluded) and
    the world size. Under torchrun every rank calls this (`ctx`, default
    `distributed.current()`); `checkpoints`: see `fit`.
    """
    ctx = ctx or distributed.current()
    progress = progress and ctx.is_main
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
    originals = len(train_x)
    if recipe.styles > 0:  # continental-style copies (before the renderings, which draw them)
        from digitrec.training.styles import styled_copies
        extra_x, extra_y = styled_copies(train_x, train_y, recipe.seed, recipe.styles)
        train_x, train_y = np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y])
    if recipe.real_input > 0:
        extra_x, extra_y = real_input_set(train_x, train_y, round(recipe.real_input * len(train_x)),
                                          recipe.seed, progress)
        train_x, train_y = np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y])

    model = create_model(recipe.architecture)
    if start is not None:
        model.load_state_dict(start.state_dict())
    if ctx.distributed:  # the same initial weights everywhere, then each rank's own dropout
        torch.manual_seed(ctx.rank_seed(recipe.seed))
    val = mnist.split("val")
    teacher = keep = None
    if recipe.distill > 0:  # keep the starting model's answers on MNIST's own images
        if start is None:
            raise ValueError(f"recipe {recipe.name!r} distils from its starting weights: "
                             "give it init")
        teacher, keep = start, np.arange(len(train_x)) < originals
    history = fit(model, train_x, train_y, recipe, progress=progress,
                  val=val if recipe.validate_each_epoch else None, ctx=ctx,
                  checkpoints=checkpoints, teacher=teacher, keep=keep)
    seconds = history[-1]["seconds"]

    def score(images: np.ndarray, labels: np.ndarray) -> float:
        if ctx.distributed:  # each rank scores its share
            return distributed.accuracy(model, images, labels, ctx)
        return accuracy(model, images, labels)

    started = time.perf_counter()
    test_acc = score(*mnist.split("test")) if evaluate_test else None
    to_test = seconds + time.perf_counter() - started
    val_acc = history[-1]["val_accuracy"]
    if val_acc is None and not full:
        val_acc = history[-1]["val_accuracy"] = score(*val)
    model.cpu()
    card = {
        "recipe": recipe.name,
        "hyperparameters": {**recipe.to_dict(), "limit": limit, "full": full,
                            "steps": history[-1]["steps"]},
        "trained_on": f"{len(train_x)} images ({'all 60,000' if full else 'first 55,000'}"
                      f"{', limited' if limit else ''}"
                      f"{', plus continental-style copies' if recipe.styles else ''}"
                      f"{', plus real-input renderings of them' if recipe.real_input else ''})",
        **({"styles": _style_settings(recipe.styles)} if recipe.styles else {}),
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
        "world_size": ctx.world_size,
        "command": shlex.join(["digitrec", *sys.argv[1:]]) if sys.argv else "",
    }
    if progress:
        print(f"{recipe.name} ({recipe.architecture}): {history[-1]['steps']} steps in "
              f"{seconds:.1f}s, test accuracy "
              f"{'not measured' if test_acc is None else f'{test_acc:.4f}'}", file=sys.stderr)
    return TrainResult(model.eval(), card, history)


def _style_settings(scale: float) -> dict:
    """The card's record of the style transforms (training/styles.py) a recipe added."""
    from digitrec.training.styles import SETTINGS
    return {"module": "digitrec.training.styles", "scale": scale, **SETTINGS}


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
    (NAME defaults to the architecture); under torchrun rank 0 writes and the others wait."""
    result = train(recipe, **run)
    ctx = run.get("ctx") or distributed.current()
    if ctx.is_main:
        save_model(result.model, out, name or recipe.architecture, result.card, half=half)
    ctx.barrier()  # a next round may start from these weights (`init`)
    return result


def train_fast(epochs: float = FAST.epochs, seed: int = FAST.seed, **run) -> TrainResult:
    """`train(FAST)`: the `digitrec train --fast` recipe with another length or seed."""
    return train(FAST.replace(epochs=epochs, seed=seed), **run)
