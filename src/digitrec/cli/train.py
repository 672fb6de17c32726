"""`digitrec train` and `digitrec train-ensemble`: a Recipe from the flags or the named recipes
(digitrec.training.recipes), trained by the one loop (digitrec.training.loop), as one process or
as the ranks of a torchrun job (`torchrun ... -m digitrec train ...`, or `--nproc N`), with
checkpoints to resume from (`--resume`; automatic after a torchrun restart)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from digitrec.errors import DigitrecError, UsageError
from digitrec.training.recipes import (
    BUNDLED,
    FAST,
    TRAIN,
    Recipe,
    fine_tuning,
    style_fine_tuning,
)

# Flags that also apply to a bundled member; its own architecture, epochs, seed and augmentation
# (elastic, strength) override the others, and --epochs overrides all of them.
MEMBER_FLAGS = ("batch_size", "lr", "augment", "real_input", "distill")


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
            "real_input": args.real_input, "distill": args.distill}


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


def _check_scaling(args: argparse.Namespace) -> None:
    """UsageError for bad --nproc, --max-restarts, --checkpoint-every."""
    from digitrec.training.distributed import under_torchrun
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be >= 1, not {args.checkpoint_every}")
    if args.nproc is not None:
        if args.nproc < 1:
            raise UsageError(f"--nproc must be >= 1, not {args.nproc}")
        if under_torchrun():
            raise UsageError("--nproc starts torchrun's agent: not under torchrun")
    if args.max_restarts is not None:
        if args.nproc is None:
            raise UsageError("--max-restarts applies with --nproc (under torchrun, give it to "
                             "torchrun)")
        if args.max_restarts < 0:
            raise UsageError(f"--max-restarts must be >= 0, not {args.max_restarts}")


def _check_batches(args: argparse.Namespace, recipes: list[Recipe]) -> None:
    """UsageError unless every recipe's batch divides among the ranks (--nproc or torchrun's)."""
    world = args.nproc or int(os.environ.get("WORLD_SIZE") or 1)
    for recipe in recipes:
        if recipe.batch_size % world:
            raise UsageError(f"batch size {recipe.batch_size} is not divisible by the {world} "
                             "ranks (each rank takes batch / ranks images a step)")


def _checkpoints(args: argparse.Namespace, name: str, recipe: Recipe):
    """Where and when this model's checkpoints go (checkpoint.Policy): OUT/checkpoints/NAME-RECIPE
    (or under --checkpoint-dir); resume with --resume or after a torchrun restart."""
    from digitrec.training.checkpoint import Policy
    from digitrec.training.distributed import restart_count_now
    base = Path(args.checkpoint_dir) if args.checkpoint_dir else Path(args.out) / "checkpoints"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-{recipe.name}").strip("-")
    return Policy(base / slug, every=args.checkpoint_every,
                  resume=args.resume or restart_count_now() > 0)


def _launch(args: argparse.Namespace) -> int:
    """Run this command (`args.run`) as --nproc ranks under torchrun's elastic agent, restarting
    them all up to --max-restarts times; any training command with these flags can call it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from digitrec.training import distributed
    flags = {**vars(args), "nproc": None, "max_restarts": None}
    try:
        distributed.launch(_rank_main, (flags,), args.nproc, args.max_restarts or 0)
    except ChildFailedError as exc:
        failures = "; ".join(f"rank {rank}: exit code {f.exitcode}"
                             for rank, f in sorted(exc.failures.items()))
        error = DigitrecError(f"{args.nproc} ranks, {args.max_restarts or 0} restarts allowed: "
                              f"failed ({failures})")
        codes = {f.exitcode for f in exc.failures.values()}
        if len(codes) == 1 and codes <= set(distributed.EXPECTED_EXIT_CODES):  # the rank's own
            # DigitrecError: its exit status
            error.exit_code = codes.pop()
        raise error from None
    return 0


def _rank_main(flags: dict) -> int:
    """One rank started by `--nproc`: the command (`run`: "module:function" of digitrec.cli)
    as `digitrec` would run it."""
    import importlib

    from digitrec.config import read
    args = argparse.Namespace(**flags)
    try:
        settings = read()
        if settings.torch_threads:
            import torch
            torch.set_num_threads(settings.torch_threads)
        module, function = args.run.split(":")
        return getattr(importlib.import_module(f"digitrec.cli.{module}"), function)(args)
    except DigitrecError as exc:
        print(f"digitrec {args.command}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def train(args: argparse.Namespace) -> int:
    _check_scaling(args)
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
    return _train_plans(args, {args.name or recipe.architecture: [recipe]})


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
    weights = str(Path(args.out) / f"{name}.safetensors")
    if getattr(args, "start", None):  # --from DIR: the style fine-tuning of DIR's weights
        if name not in BUNDLED:
            raise UsageError(f"--from fine-tunes bundled members ({', '.join(BUNDLED)}), "
                             f"not {name!r}")
        start = Path(args.start) / f"{name}.safetensors"
        problem = _init_problem(start, recipe.architecture)
        if problem:
            raise UsageError(problem.replace("--init", "--from"))
        rounds = style_fine_tuning(recipe, str(start), weights)
        return [_recipe(r, epochs=args.epochs) for r in rounds] if args.epochs else rounds
    if args.epochs:
        return [_recipe(recipe, epochs=args.epochs)]
    return [recipe, *fine_tuning(recipe, weights)]


def train_ensemble(args: argparse.Namespace) -> int:
    _check_scaling(args)
    return _train_plans(args, {name: member_recipes(name, args)
                               for name in args.members or BUNDLED})


def _train_plans(args: argparse.Namespace, plans: dict[str, list[Recipe]]) -> int:
    """Train each name's recipes in turn (a member, then its fine-tuning rounds), as one
    process, as this rank of a torchrun job, or (--nproc) as a job started here. Every name
    and batch is checked first, before any rank starts or any training."""
    out, run = Path(args.out), _run(args)
    _check_batches(args, [recipe for recipes in plans.values() for recipe in recipes])
    if any(r.distill > 0 and not r.init for recipes in plans.values() for r in recipes):
        raise UsageError("--distill distils from the starting weights: give --init (train) or "
                         "--from (train-ensemble)")
    if args.nproc:
        return _launch(args)
    from digitrec.training import distributed, loop
    ctx = distributed.init()
    try:
        for name, recipes in plans.items():
            for recipe in recipes:
                result = loop.train_and_save(recipe, out, half=args.half, name=name, ctx=ctx,
                                             checkpoints=_checkpoints(args, name, recipe), **run)
            if ctx.is_main:
                _report_trained(name, result, out)
    finally:
        distributed.teardown()
    return 0


def train_reader(args: argparse.Namespace) -> int:
    """`digitrec train-reader`: the sequence reader, written to --out."""
    from digitrec.training.reader import ReaderRecipe
    from digitrec.training.reader import train_reader as run
    if args.steps < 1 or args.batch_size < 1:
        raise UsageError("--steps and --batch-size must be at least 1")
    if not 0 <= args.styles <= 1.5:
        raise UsageError("--styles must be between 0 and 1.5")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    recipe = ReaderRecipe(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, styles=args.styles)
    result = run(args.out, recipe, data_dir=args.data_dir, init=args.init,
                 eval_every=min(500, args.steps))
    print(f"reader: validation lines read exactly {result['val_exact']:.2%} -> {args.out}")
    return 0
