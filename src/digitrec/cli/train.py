"""`digitrec train` and `digitrec train-ensemble`: a Recipe from the flags or the named recipes
(digitrec.training.recipes), trained by the one loop (digitrec.training.loop)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitrec.errors import UsageError
from digitrec.training.recipes import BUNDLED, FAST, TRAIN, Recipe, fine_tuning

# Flags that also apply to a bundled member; its own architecture, epochs, seed and augmentation
# (elastic, strength) override the others, and --epochs overrides all of them.
MEMBER_FLAGS = ("batch_size", "lr", "augment", "real_input")


def _recipe(base: Recipe, **changes) -> Recipe:
    """`base` with the flags' changes; UsageError when they make no valid recipe."""
    try:
        return base.replace(**changes)
    except ValueError as exc:
        raise UsageError(str(exc).removeprefix(f"recipe {base.name!r}: ")) from None


def _flags(args: argparse.Namespace) -> dict:
    """The Recipe fields that `train` and `train-ensemble` take from their flags."""
    return {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "augment": args.augment, "elastic": args.elastic, "aug_strength": args.aug_strength,
            "real_input": args.real_input}


def _run(args: argparse.Namespace) -> dict:
    """The run settings of `loop.train`: which images, where they are, how many threads."""
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, not {args.limit}")
    return {"limit": args.limit, "full": args.full, "data_dir": args.data_dir,
            "threads": args.threads}


def _report_trained(name: str, result, out: Path) -> None:
    card = result.card
    print(f"{name}: test accuracy {card['test_accuracy']:.4f}, "
          f"{card['training_seconds']:.0f}s → {out / (name + '.safetensors')}")


def train(args: argparse.Namespace) -> int:
    from digitrec.training import loop
    if args.fast:  # --batch-size, --lr and the augmentation flags do not apply
        recipe = _recipe(FAST, architecture=args.model or FAST.architecture,
                         epochs=args.epochs or FAST.epochs, seed=args.seed, init=args.init,
                         real_input=args.real_input)
    elif args.model is None:
        raise UsageError("--model is required (or use --fast)")
    else:
        recipe = _recipe(TRAIN, architecture=args.model, epochs=args.epochs or TRAIN.epochs,
                         init=args.init, **_flags(args))
    _check_architecture(recipe.architecture)
    if recipe.init:
        problem = _init_problem(Path(recipe.init), recipe.architecture)
        if problem:
            raise UsageError(problem)
    out, name = Path(args.out), args.name or recipe.architecture
    result = loop.train_and_save(recipe, out, half=args.half, name=name, **_run(args))
    _report_trained(name, result, out)
    return 0


def _check_architecture(name: str) -> None:
    """UsageError unless `name` is a registered architecture."""
    from digitrec.models import list_models
    if name not in list_models():
        raise UsageError(f"unknown architecture {name!r}: choose from {', '.join(list_models())}")


def _init_problem(path: Path, arch: str) -> str | None:
    """Why `--init PATH` cannot start a `arch` model (missing files, another architecture)."""
    card = path.with_suffix(".json")
    for needed in (path.with_suffix(".safetensors"), card):
        if not needed.is_file():
            return f"--init {path}: {needed} does not exist"
    try:
        found = json.loads(card.read_text()).get("architecture")
    except (OSError, ValueError, AttributeError) as exc:
        return f"--init {path}: unreadable model card {card} ({exc})"
    if found != arch:
        return f"--init {path} is a {found} model, not a {arch}"
    return None


def member_recipes(name: str, args: argparse.Namespace) -> list[Recipe]:
    """What `train-ensemble` trains for NAME, in order: a bundled member's recipe then its
    fine-tuning rounds (none with --epochs, which overrides the epochs), or for an architecture,
    TRAIN with the flags."""
    flags = _flags(args)
    if name in BUNDLED:
        recipe = _recipe(BUNDLED[name], **{k: flags[k] for k in MEMBER_FLAGS})
    else:
        _check_architecture(name)
        recipe = _recipe(TRAIN, name=name, architecture=name, **flags)
    if args.epochs:
        return [_recipe(recipe, epochs=args.epochs)]
    return [recipe, *fine_tuning(recipe, str(Path(args.out) / f"{name}.safetensors"))]


def train_ensemble(args: argparse.Namespace) -> int:
    from digitrec.training import loop
    out, run = Path(args.out), _run(args)
    plans = {name: member_recipes(name, args) for name in args.members or BUNDLED}
    for name, recipes in plans.items():  # every name checked above, before any training
        for recipe in recipes:
            result = loop.train_and_save(recipe, out, half=args.half, name=name, **run)
        _report_trained(name, result, out)
    return 0
