"""`digitrec finetune --out DIR [--db URL] [--weights DIR]`: fine-tune the served ensemble on the
corrections people made (digitrec.feedback) mixed with MNIST replay, measure it before and after
on the MNIST test set and on held-out corrections, and write it to DIR for `digitrec serve
--weights DIR`, unless it loses more than --max-mnist-drop points on MNIST test (exit status 4,
nothing written). The training itself is digitrec.training.finetune."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field

from digitrec.errors import DataError


@dataclass
class CorrectionDigits:
    """The corrections as plain arrays: one 28x28 image the models saw per digit, its label,
    and the correction it belongs to (the digits of a number share one)."""

    images: list = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    corrections: int = 0
    skipped: int = 0
    by_mode: Counter = field(default_factory=Counter)
    by_source: Counter = field(default_factory=Counter)
    by_model: Counter = field(default_factory=Counter)


def read_corrections(store) -> CorrectionDigits:
    """Every correction of a FeedbackStore as per-digit images + labels (a number's 28x28s with
    the digits of its label; one whose digit count differs from its images is skipped)."""
    from digitrec.feedback import images28_of

    found = CorrectionDigits()
    for correction in store.all():
        images = images28_of(correction)
        if len(images) != len(correction.label) or not correction.label.isdigit():
            found.skipped += 1
            continue
        found.images.extend(images)
        found.labels.extend(int(d) for d in correction.label)
        found.groups.extend([correction.id] * len(images))
        found.corrections += 1
        found.by_mode[correction.mode] += 1
        found.by_source[correction.source] += 1
        found.by_model[correction.model_version[:12]] += 1
    return found


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def run(args: argparse.Namespace) -> int:
    """Read the corrections, fine-tune, measure, write (or refuse); as one process, as this
    rank of a torchrun job, or (--nproc N) as a job of N ranks started here."""
    from digitrec.cli.models import weights_dir
    from digitrec.cli.train import _check_batches, _check_scaling, _launch, _recipe
    from digitrec.errors import UsageError
    from digitrec.feedback import FeedbackStore
    from digitrec.training import distributed
    from digitrec.training.recipes import CORRECTIONS

    _check_scaling(args)
    if args.limit_mnist_test is not None and args.limit_mnist_test < 1:
        raise UsageError(f"--limit-mnist-test must be >= 1, not {args.limit_mnist_test}")
    recipe = _recipe(CORRECTIONS, lr=args.lr or CORRECTIONS.lr,
                     batch_size=args.batch_size or CORRECTIONS.batch_size,
                     distill=CORRECTIONS.distill if args.distill is None else args.distill)
    _check_batches(args, [recipe])
    ctx = distributed.current() if args.nproc else distributed.init()
    try:
        store = FeedbackStore.open(args.db)
        found = read_corrections(store)
        store.close()
        if not found.corrections:
            raise DataError(f"no corrections in {store.url}: correct some digits on the page "
                            "(`make run`), or store a folder with `digitrec feedback import DIR`")
        if args.nproc:  # checked here, before any rank starts; each rank reads them again
            return _launch(args)
        if ctx.is_main:
            print(f"{found.corrections} correction(s), {len(found.labels)} digit(s) from "
                  f"{store.url}" + (f" ({found.skipped} skipped)" if found.skipped else ""),
                  flush=True)
        return _finetune(args, found, recipe, store.url, weights_dir(args), ctx)
    finally:
        distributed.teardown()


def _finetune(args: argparse.Namespace, found: CorrectionDigits, recipe, url: str, weights,
              ctx) -> int:
    """This rank's part of the run; rank 0 prints the before/after table."""
    import numpy as np

    from digitrec.training.finetune import finetune

    source = {"database": url, "corrections": found.corrections,
              "skipped": found.skipped, "by_mode": dict(found.by_mode),
              "by_source": dict(found.by_source), "by_model_version": dict(found.by_model)}
    result = finetune(np.stack(found.images), np.array(found.labels), args.out,
                      weights=weights, groups=np.array(found.groups),
                      steps=args.steps, replay=args.replay, holdout=args.holdout,
                      seed=args.seed, max_mnist_drop=args.max_mnist_drop, recipe=recipe,
                      data_dir=args.data_dir, limit_mnist_test=args.limit_mnist_test,
                      backend=args.inference, int8=args.int8, source=source, ctx=ctx,
                      checkpoint_dir=args.checkpoint_dir,
                      checkpoint_every=args.checkpoint_every, resume=args.resume,
                      alpha=args.interpolate)
    if not ctx.is_main:
        return 0
    s = result.summary
    held = s["corrections"]["held_out_digits"]
    print(f"\n{'':24}{'before':>10}{'after':>10}")
    print(f"{'MNIST test accuracy':24}{_pct(s['before']['mnist_test']['accuracy']):>10}"
          f"{_pct(s['after']['mnist_test']['accuracy']):>10}   "
          f"({s['mnist_test_images']:,} images)")
    print(f"{'held-out corrections':24}{_pct(s['before']['held_out']['accuracy']):>10}"
          f"{_pct(s['after']['held_out']['accuracy']):>10}   ({held} digit(s))")
    print(f"\nweights {s['interpolation']['alpha']:g} of the way from the base to the "
          f"fine-tuned ones ({s['interpolation']['chosen_by']})")
    print(s['inference']['int8'])
    print(f"wrote {result.out}: version {result.version[:12]} (from {s['base_version'][:12]});"
          f" serve it with: digitrec serve --weights {result.out}")
    return 0
