"""Learning from corrections: fine-tune every member of a served ensemble on people's corrections
(the 28x28 images the models saw, with the right labels) mixed with MNIST replay, so that it
learns their handwriting without forgetting MNIST's.

The corrections are split, seeded and at random (they carry no writer id), into a part to learn
from and a held-out part to measure on. Each member trains with the one loop (`loop.fit`,
recipe `CORRECTIONS`) for a fixed number of steps on the learning part, repeated and augmented
on the fly, plus `replay` MNIST training images per correction image; the trained weights are
then moved part of the way back to the base's (WiSE-FT, `training.interpolate`: the most of the
fine-tune that keeps MNIST *validation* within the allowed drop). The new ensemble is
written to a temporary directory beside `out` (weights as the base stored them, model cards,
the base's calibration.json, and int8.json re-recorded for the new weights when the base served
int8 and the new ranges pass `int8.good_enough`), measured through the `Recognizer` exactly as
it will be served, on the MNIST test set and on the held-out corrections, before and after, and
renamed to `out` only if MNIST test accuracy fell by at most `max_mnist_drop` points: otherwise
`FinetuneRefused` (a ModelError) and nothing is written.

Under torchrun (`digitrec finetune --nproc N`, or `torchrun ... -m digitrec finetune`) every rank
builds the same seeded training mix and trains each member on its shard under
DistributedDataParallel with the single-process global batch (`loop.fit`); rank 0 alone
measures, writes and reports. Each member checkpoints into `.OUT.checkpoints/NAME` beside `out`
(removed when the run ends), so a restarted job continues where it stopped.

Plain arrays in, files out: this module knows nothing of the corrections database (the CLI reads
it, digitrec.cli.finetune)."""

from __future__ import annotations

import copy
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from digitrec import __version__
from digitrec.data.mnist import file_checksums, load_mnist
from digitrec.errors import DataError, ModelError, UsageError
from digitrec.models import BUNDLED_DIR, Ensemble, load_ensemble, save_model, weights_digest
from digitrec.recognizer import THRESHOLD_FILE, Recognizer
from digitrec.training import checkpoint, distributed
from digitrec.training.distributed import Context
from digitrec.training.interpolate import GRID, choose_alpha, interpolate
from digitrec.training.loop import accuracy, fit
from digitrec.training.recipes import CORRECTIONS, Recipe

DEFAULT_STEPS = 150  # optimizer steps per member (2-3 minutes for the bundled three on 2 cores)
DEFAULT_REPLAY = 8.0  # MNIST replay images per correction image in the training mix
DEFAULT_HOLDOUT = 0.2  # fraction of the corrections held out for measuring
DEFAULT_MAX_MNIST_DROP = 0.1  # points of MNIST test accuracy a new model may lose
VALIDATION_SHARE = 0.5  # of that drop, what --interpolate auto allows on MNIST validation
INT8_CALIBRATION_IMAGES = 1000  # the first MNIST training images, as `digitrec quantize`
SPLIT_NOTE = ("random, seeded, by correction (all digits of a number on the same side); "
              "corrections carry no writer id, so one person's digits may fall on both sides")


class FinetuneRefused(ModelError):
    """The fine-tuned model lost too much on the MNIST test set: nothing was written."""


@dataclass(frozen=True)
class Split:
    """Indices of the digits to learn from and of those held out for measuring."""

    train: np.ndarray
    held_out: np.ndarray


def split_corrections(groups: np.ndarray, holdout: float, seed: int) -> Split:
    """Split digits into learn / held-out by their correction (`groups`: one id per digit, the
    digits of a number share one): a seeded random `holdout` fraction of the corrections (at
    least one when there are two or more and `holdout` > 0) is held out."""
    if not 0 <= holdout < 1:
        raise UsageError(f"--holdout must lie in [0, 1), not {holdout}")
    ids = np.unique(groups)
    held_count = round(len(ids) * holdout)
    if holdout > 0 and len(ids) >= 2:
        held_count = min(max(held_count, 1), len(ids) - 1)
    held_ids = np.random.default_rng(seed).permutation(ids)[:held_count]
    held = np.isin(groups, held_ids)
    return Split(np.flatnonzero(~held), np.flatnonzero(held))


def measure(recognizer: Recognizer, images28: np.ndarray, labels: np.ndarray) -> dict:
    """How a Recognizer reads labelled 28x28 images, as served: best-guess accuracy and error,
    the abstention rate, and accuracy on the answers it gives (None for no images)."""
    n = len(images28)
    if n == 0:
        return {"images": 0, "accuracy": None, "error": None, "abstained": None,
                "accuracy_answered": None}
    predictions = recognizer.classify(np.asarray(images28, dtype=np.uint8))
    guess = np.array([p.best_guess for p in predictions])
    abstained = np.array([p.abstained for p in predictions])
    right = guess == np.asarray(labels)
    answered = int((~abstained).sum())
    return {"images": n, "accuracy": float(right.mean()), "error": float(1 - right.mean()),
            "errors": int((~right).sum()), "abstained": float(abstained.mean()),
            "accuracy_answered": float(right[~abstained].mean()) if answered else None}


def training_mix(images: np.ndarray, labels: np.ndarray, replay_pool: tuple[np.ndarray, np.ndarray],
                 total: int, replay: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """`total` training images: the corrections repeated (in a seeded random order) to fill
    1 / (1 + replay) of them, the rest distinct MNIST images drawn from `replay_pool` (repeated
    only when the pool is smaller); the counts, for the model card."""
    if len(images) == 0:
        raise DataError("no corrections to learn from (all were held out, or there are none)")
    rng = np.random.default_rng(seed)
    n_corr = max(1, round(total / (1 + replay)))
    n_replay = total - n_corr
    corr_idx = np.concatenate([rng.permutation(len(images))
                               for _ in range(-(-n_corr // len(images)))])[:n_corr]
    pool_x, pool_y = replay_pool
    replay_idx = rng.choice(len(pool_x), size=n_replay, replace=n_replay > len(pool_x))
    x = np.concatenate([images[corr_idx], pool_x[replay_idx]])
    y = np.concatenate([np.asarray(labels, dtype=np.int64)[corr_idx],
                        pool_y[replay_idx].astype(np.int64)])
    counts = {"correction_images": int(n_corr), "distinct_corrections": len(images),
              "repeats_per_correction": round(n_corr / len(images), 1),
              "mnist_replay_images": int(n_replay), "mnist_distinct": len(np.unique(replay_idx)),
              "replay_ratio": replay}
    return x, y, counts


def member_recipe(base: Recipe, architecture: str, steps: int, seed: int, index: int) -> Recipe:
    """The recipe for member number `index` (its own seed), one pass of `steps` batches."""
    return base.replace(name=f"{base.name} {index + 1}", architecture=architecture,
                        seed=seed + index, epochs=1)


@dataclass
class FinetuneResult:
    """What `finetune` did: where it wrote, the new version, and the run's summary (also in every
    model card under "finetune")."""

    out: Path
    version: str
    summary: dict
    history: dict[str, list[dict]] = field(default_factory=dict)


def _pt(before: float, after: float) -> float:
    return round((after - before) * 100, 4)


def finetune(images: np.ndarray, labels: np.ndarray, out: str | os.PathLike,
             weights: str | os.PathLike | None = None, groups: np.ndarray | None = None,
             steps: int = DEFAULT_STEPS, replay: float = DEFAULT_REPLAY,
             holdout: float = DEFAULT_HOLDOUT, seed: int = 0,
             max_mnist_drop: float = DEFAULT_MAX_MNIST_DROP, recipe: Recipe = CORRECTIONS,
             data_dir: str | os.PathLike | None = None, limit_mnist_test: int | None = None,
             backend: str | None = None, int8: bool = True, source: dict | None = None,
             progress: bool = True, ctx: Context | None = None,
             checkpoint_dir: str | os.PathLike | None = None,
             checkpoint_every: int | None = None, resume: bool = False,
             alpha: float | None = None) -> FinetuneResult:
    """Fine-tune the ensemble in `weights` (default: the bundled one) on corrections (`images`:
    (N, 28, 28) uint8, what the models saw; `labels`: (N,) digits; `groups`: the correction each
    digit belongs to, default one each) mixed with MNIST replay, and write it to `out` (a new
    or empty directory) unless MNIST test accuracy drops by more than `max_mnist_drop` points
    (FinetuneRefused, nothing written). `source`: what the corrections are, for the cards.
    `ctx`: this rank (default `distributed.current()`); on ranks other than 0 the result holds
    only the training history. Checkpoints go to `checkpoint_dir` (default `.OUT.checkpoints`
    beside `out`), every `checkpoint_every` steps and at each member's end; `resume` (or a
    torchrun restart) continues from them. `alpha`: how far the new weights move from the base
    to the fine-tuned ones (WiSE-FT, digitrec.training.interpolate; 1: all the way); None picks
    the most of it that keeps MNIST validation within `max_mnist_drop`."""
    started = time.perf_counter()
    ctx = ctx or distributed.current()
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"expected (N, 28, 28) images and N labels, got {images.shape} and "
                        f"{labels.shape}")
    if len(images) and (labels.min() < 0 or labels.max() > 9):
        raise DataError("labels must be digits 0-9")
    if steps < 1:
        raise UsageError(f"--steps must be >= 1, not {steps}")
    if not replay >= 0:
        raise UsageError(f"--replay must be >= 0, not {replay}")
    if alpha is not None and not 0 < alpha <= 1:
        raise UsageError(f"--interpolate must be 'auto' or a number in (0, 1], not {alpha}")
    out = Path(out)
    weights = Path(weights) if weights else BUNDLED_DIR
    if out.resolve() in (weights.resolve(), BUNDLED_DIR.resolve()):
        raise UsageError(f"--out {out}: write the new weights to a directory of their own")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty directory: choose a new one")
    groups = np.arange(len(images)) if groups is None else np.asarray(groups)
    split = split_corrections(groups, holdout, seed)
    if len(split.train) == 0:
        raise DataError(f"no corrections to learn from: {len(np.unique(groups))} correction(s), "
                        f"{len(split.held_out)} digit(s) held out")

    progress = progress and ctx.is_main

    def say(text: str) -> None:
        if progress:
            print(text, file=sys.stderr)

    ensemble, cards = load_ensemble(weights)
    mnist = load_mnist(data_dir)
    total = steps * recipe.batch_size
    train_x, train_y, mix = training_mix(images[split.train], labels[split.train],
                                         mnist.split("train"), total, replay, seed)
    keep = np.arange(len(train_x)) >= mix["correction_images"]  # the replay: distilled
    checkpoint_home = (Path(checkpoint_dir) if checkpoint_dir
                       else out.parent / f".{out.name}.checkpoints")
    resume = resume or distributed.restart_count_now() > 0

    def train_members() -> dict[str, list[dict]]:
        """Every member trained in turn (this rank's share of each), its history by name."""
        history = {}
        for index, (name, model) in enumerate(ensemble.members.items()):
            member = member_recipe(recipe, cards[name]["architecture"], steps, seed, index)
            torch.manual_seed(ctx.rank_seed(member.seed))  # dropout
            history[name] = _fit_member(model, train_x, train_y, keep, member, progress, ctx,
                                        checkpoint.Policy(checkpoint_home / name,
                                                          checkpoint_every, resume))
            model.cpu().eval()
            say(f"{name}: {steps} steps in {history[name][-1]['seconds']:.0f}s")
        return history

    if not ctx.is_main:  # train each member's share; rank 0 measures and writes
        return FinetuneResult(out, "", {}, train_members())

    base = Recognizer.load(weights, backend=backend)
    base_version = base.version
    test_x, test_y = mnist.split("test")
    if limit_mnist_test:
        test_x, test_y = test_x[:limit_mnist_test], test_y[:limit_mnist_test]
    held_x, held_y = images[split.held_out], labels[split.held_out]
    say(f"base {base_version[:12]} ({base.inference}): measuring on {len(test_x):,} MNIST test "
        f"images and {len(held_x)} held-out correction digit(s)")
    before = {"mnist_test": measure(base, test_x, test_y),
              "held_out": measure(base, held_x, held_y)}
    say(f"before: MNIST test {before['mnist_test']['accuracy']:.2%}"
        + (f", held-out corrections {before['held_out']['accuracy']:.2%}" if len(held_x) else ""))

    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a killed earlier attempt
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the weights from a server user
    try:
        history, member_test = train_members(), {}
        ensemble, interpolation = _interpolate(load_ensemble(weights)[0], ensemble, alpha,
                                               mnist.split("val"), max_mnist_drop)
        say(interpolation["note"])
        for name, model in ensemble.members.items():
            member_test[name] = accuracy(model, test_x, test_y)
            say(f"{name}: MNIST test {member_test[name]:.2%} (fp32)")
            save_model(model, staging, name, {}, half=cards[name].get("dtype") == "float16")
        if (weights / THRESHOLD_FILE).exists():
            shutil.copy2(weights / THRESHOLD_FILE, staging / THRESHOLD_FILE)
        new_ensemble, _ = load_ensemble(staging)  # as stored (float16 weights rounded)
        version = weights_digest(new_ensemble)
        int8_note = _int8(new_ensemble, staging, weights, mnist, test_x, test_y, int8)
        say(int8_note)
        after_rec = Recognizer.load(staging, backend=backend)
        after = {"mnist_test": measure(after_rec, test_x, test_y),
                 "held_out": measure(after_rec, held_x, held_y)}
        drop = -_pt(before["mnist_test"]["accuracy"], after["mnist_test"]["accuracy"])
        say(f"after: MNIST test {after['mnist_test']['accuracy']:.2%}"
            + (f", held-out corrections {after['held_out']['accuracy']:.2%}" if len(held_x)
               else "") + f" ({after_rec.inference})")
        if drop > max_mnist_drop + 1e-9:
            raise FinetuneRefused(
                f"the fine-tuned models lose {drop:.2f} points on the MNIST test set "
                f"({before['mnist_test']['accuracy']:.2%} → {after['mnist_test']['accuracy']:.2%},"
                f" {len(test_x):,} images; at most {max_mnist_drop:g} allowed): nothing written "
                f"to {out}. Try a lower --lr, fewer --steps or more --replay")
        summary = {
            "base_version": base_version,
            "base_weights": str(weights),
            "version": version,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "corrections": {"source": source or {}, "digits": len(images),
                            "corrections": len(np.unique(groups)),
                            "train_digits": len(split.train),
                            "held_out_digits": len(split.held_out),
                            "holdout_fraction": holdout, "split": SPLIT_NOTE, "seed": seed,
                            "train_labels": _label_counts(labels[split.train])},
            "mix": mix,
            "steps": steps,
            "batch_size": recipe.batch_size,
            "before": before,
            "after": after,
            "mnist_test_change_pt": -drop,
            "held_out_change_pt": (_pt(before["held_out"]["accuracy"],
                                       after["held_out"]["accuracy"]) if len(held_x) else None),
            "max_mnist_drop_pt": max_mnist_drop,
            "world_size": ctx.world_size,
            "interpolation": {k: v for k, v in interpolation.items() if k != "note"},
            "mnist_test_images": len(test_x),
            "inference": {"before": base.inference, "after": after_rec.inference,
                          "int8": int8_note},
            "calibration": (f"{THRESHOLD_FILE} copied from the base (threshold "
                            f"{after_rec.threshold:g}), not recalibrated"),
        }
        for index, name in enumerate(new_ensemble.members):
            card = {**_member_card(cards[name], history[name], member_test[name], len(test_x),
                                   recipe, steps, seed, index, data_dir),
                    "world_size": ctx.world_size, "finetune": summary}
            path = staging / f"{name}.json"
            card = {**json.loads(path.read_text()), **card}
            path.write_text(json.dumps(card, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except FinetuneRefused:
        _finished(checkpoint_home, checkpoint_dir)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _finished(checkpoint_home, checkpoint_dir)
    say(f"wrote {out} (version {version[:12]}, from {base_version[:12]}) in "
        f"{time.perf_counter() - started:.0f}s")
    return FinetuneResult(out, version, summary, history)


def _fit_member(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
                keep: np.ndarray, recipe: Recipe, progress: bool, ctx: Context,
                policy: checkpoint.Policy) -> list[dict]:
    """Train one member (the loop's `fit`), distilling from a frozen copy of its own starting
    weights on the replay images when the recipe says so."""
    teacher = copy.deepcopy(model).eval() if recipe.distill > 0 else None
    return fit(model, images, labels, recipe, progress=progress, ctx=ctx, checkpoints=policy,
               teacher=teacher, keep=keep if teacher is not None else None)


def _interpolate(base: Ensemble, tuned: Ensemble, alpha: float | None,
                 validation: tuple[np.ndarray, np.ndarray],
                 max_mnist_drop: float) -> tuple[Ensemble, dict]:
    """The fine-tuned ensemble moved back toward the base (WiSE-FT): by the given `alpha`, or
    (None) by the first of interpolate.GRID that keeps MNIST validation accuracy within
    VALIDATION_SHARE x `max_mnist_drop` points of the base's (the rest is room for the test set,
    which accepts the model, to differ from validation); what was done, for the summary
    ("note": in words)."""
    if alpha is not None:
        chosen, table, how = alpha, [], "--interpolate"
    else:
        allowed = max_mnist_drop * VALIDATION_SHARE
        chosen, table = choose_alpha(base, tuned, *validation, allowed)
        how = (f"the first of {', '.join(f'{a:g}' for a in GRID)} within {allowed:g} pt of the "
               f"base on MNIST validation ({len(validation[1]):,} images)")
    mixed = tuned if chosen == 1 else interpolate(base, tuned, chosen)
    scores = ", ".join(f"{row['alpha']:g}: {row['accuracy']:.2%}" for row in table)
    note = (f"weights {chosen:g} of the way from the base to the fine-tuned ones ({how}"
            + (f"; MNIST validation by alpha {scores}" if table else "") + ")")
    return mixed, {"alpha": chosen, "chosen_by": how, "validation": table, "note": note}


def _finished(checkpoint_home: Path, given: str | os.PathLike | None) -> None:
    """A run that ended (written or refused) resumes nothing: remove the checkpoints it kept
    in its default place (a --checkpoint-dir of the user's own is left as it is)."""
    if given is None:
        shutil.rmtree(checkpoint_home, ignore_errors=True)


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def _int8(ensemble, staging: Path, weights: Path, mnist, test_x: np.ndarray,
          test_y: np.ndarray, wanted: bool) -> str:
    """Re-record int8.json for the new weights when the base carried one (what `digitrec
    quantize` does), and keep it only if it passes the serving bar; what happened, in words."""
    from digitrec.inference import int8

    if not (weights / int8.INT8_FILE).exists():
        return f"the base has no {int8.INT8_FILE}: none written (fp32 onnx served)"
    if not wanted:
        return f"{int8.INT8_FILE} not recorded (--no-int8): fp32 onnx served"
    ranges = int8.record_ranges(ensemble, mnist.split("train")[0][:INT8_CALIBRATION_IMAGES],
                                test_x, test_y)
    figures = (f"int8 test accuracy {ranges['test_accuracy']:.2%} (fp32 "
               f"{ranges['test_accuracy_fp32']:.2%}), agreement with fp32 "
               f"{ranges['test_agreement_with_fp32']:.2%} on {ranges['test_images']:,} images")
    if not int8.good_enough(ranges):
        return f"{int8.INT8_FILE} not written, below the bar for serving ({figures}): fp32 onnx"
    (staging / int8.INT8_FILE).write_text(json.dumps(ranges) + "\n")
    return f"{int8.INT8_FILE} re-recorded for the new weights ({figures})"


def _member_card(base_card: dict, history: list[dict], test_acc: float, test_images: int,
                 recipe: Recipe, steps: int, seed: int, index: int,
                 data_dir: str | os.PathLike | None) -> dict:
    """A fine-tuned member's card (beside the common "finetune" summary)."""
    keep = ("command", "recipe", "training_seconds", "total_training_seconds", "val_accuracy",
            "test_accuracy", "trained_on", "finetune")
    seconds = history[-1]["seconds"]
    before = base_card.get("total_training_seconds", base_card.get("training_seconds", 0.0))
    return {
        "recipe": recipe.name,
        "hyperparameters": {**member_recipe(recipe, base_card["architecture"], steps, seed,
                                            index).to_dict(), "steps": steps},
        "trained_on": "people's corrections mixed with MNIST replay (see finetune)",
        "test_accuracy": test_acc if test_images == 10000 else None,
        "test_accuracy_images": test_images,
        "test_accuracy_measured": test_acc,
        "history": history,
        "training_seconds": round(seconds, 2),
        "fine_tuned_from": {k: base_card.get(k) for k in keep if k in base_card},
        "total_training_seconds": round(before + seconds, 1),
        "data_sha256": file_checksums(data_dir),
        "versions": {"digitrec": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "command": shlex.join(["digitrec", *sys.argv[1:]]) if sys.argv else "",
    }
