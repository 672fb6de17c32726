"""`digitrec train` and `digitrec train-ensemble`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitrec.errors import UsageError

# The bundled ensemble's recipe, member name -> training settings (see docs/training.md; the
# members were chosen among the trained candidates by validation accuracy, then log-loss), then
# fine-tuning rounds from those weights with real-input renderings added (FINE_TUNE; the second
# vgg8 round was kept because it scored better on the validation renderings).
BUNDLED_SET = {
    "cnnbn": {"arch": "cnnbn", "epochs": 25, "seed": 0, "aug_strength": 0.6, "elastic": False},
    "vgg8b": {"arch": "vgg8", "epochs": 11, "seed": 1, "aug_strength": 0.7, "elastic": True},
    "vgg8c": {"arch": "vgg8", "epochs": 8, "seed": 2, "aug_strength": 0.8, "elastic": False},
}
FINE_TUNE = {
    "cnnbn": [{"epochs": 3, "seed": 10, "lr": 1e-3, "real_input": 0.5}],
    "vgg8b": [{"epochs": 2, "seed": 11, "lr": 1e-3, "real_input": 0.5},
              {"epochs": 2, "seed": 21, "lr": 5e-4, "real_input": 0.5}],
    "vgg8c": [{"epochs": 2, "seed": 12, "lr": 1e-3, "real_input": 0.5},
              {"epochs": 2, "seed": 22, "lr": 5e-4, "real_input": 0.5}],
}


def _train_kwargs(args: argparse.Namespace) -> dict:
    return {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "augment": args.augment, "elastic": args.elastic,
            "aug_strength": args.aug_strength, "limit": args.limit,
            "full": args.full, "data_dir": args.data_dir, "threads": args.threads,
            "real_input": args.real_input}


def _report_trained(name: str, result, out: Path) -> None:
    card = result.card
    print(f"{name}: test accuracy {card['test_accuracy']:.4f}, "
          f"{card['training_seconds']:.0f}s → {out / (name + '.safetensors')}")


def train_fast(args: argparse.Namespace) -> int:
    from digitrec.models import save_model
    from digitrec.training.loop import train_fast
    out, arch = Path(args.out), args.model or "fastnet"
    result = train_fast(arch, epochs=args.epochs or 1.5, seed=args.seed, limit=args.limit,
                        full=args.full, data_dir=args.data_dir, threads=args.threads)
    save_model(result.model, out, arch, result.card, half=args.half)
    _report_trained(arch, result, out)
    return 0


def train(args: argparse.Namespace) -> int:
    from digitrec.training.loop import train_and_save
    if args.fast:
        return train_fast(args)
    if args.model is None:
        raise UsageError("--model is required (or use --fast)")
    _check_architecture(args.model)
    if args.init:
        problem = _init_problem(Path(args.init), args.model)
        if problem:
            raise UsageError(problem)
    out = Path(args.out)
    name = args.name or args.model
    result = train_and_save(args.model, out, half=args.half, name=name,
                            epochs=args.epochs or 15, init=args.init, **_train_kwargs(args))
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


def train_ensemble(args: argparse.Namespace) -> int:
    from digitrec.training.loop import train_and_save
    out = Path(args.out)
    for name in args.members or []:
        if name not in BUNDLED_SET:
            _check_architecture(name)
    for name in args.members or BUNDLED_SET:
        recipe = dict(BUNDLED_SET.get(name, {"arch": name, "epochs": 15}))
        kwargs = {**_train_kwargs(args), **{k: v for k, v in recipe.items() if k != "arch"}}
        if args.epochs:
            kwargs["epochs"] = args.epochs
        result = train_and_save(recipe["arch"], out, half=args.half, name=name, **kwargs)
        for round_settings in FINE_TUNE.get(name, []) if not args.epochs else []:
            kwargs.update(round_settings)
            result = train_and_save(recipe["arch"], out, half=args.half, name=name,
                                    init=str(out / f"{name}.safetensors"), **kwargs)
        _report_trained(name, result, out)
    return 0
