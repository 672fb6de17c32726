"""`digitrec evaluate`, `digitrec calibrate` and `digitrec compare`."""

from __future__ import annotations

import argparse
import json
import sys

from digitrec.cli.models import derived_files_dir, weights_dir
from digitrec.errors import UsageError


def evaluate(args: argparse.Namespace) -> int:
    """Members and ensemble on the MNIST test set, on the backend the app serves (or, with
    --folder or --strokes, the ensemble on the user's own labelled digits)."""
    if args.number and not args.folder:
        raise UsageError("--number only applies with --folder")
    if args.folder or args.strokes:
        return evaluate_labelled(args)
    given = [f"--{name}" for name in ("style", "pen", "pad")
             if getattr(args, name) != {"style": "canvas", "pad": 280}.get(name)]
    if given:
        raise UsageError(f"{', '.join(given)} only apply with --strokes")
    from digitrec.data.mnist import load_mnist
    from digitrec.evaluation.evaluate import evaluate_recognizer, format_text, write_report
    from digitrec.recognizer import Recognizer

    recognizer = Recognizer.load(weights_dir(args), backend=args.inference)
    images, labels = load_mnist(args.data_dir).split("test")
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    result = evaluate_recognizer(recognizer, images, labels)
    if args.report:
        for path in write_report(result, args.report):
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result.to_json()) if args.json else format_text(result))
    return 0


def evaluate_labelled(args: argparse.Namespace) -> int:
    """The ensemble on a folder of labelled images (--folder; with --number, whole numbers
    read with read_number) or on pen strokes (--strokes): exit 3 when some image could not be
    read (the others are counted)."""
    from digitrec.evaluation import labelled, numbers
    from digitrec.recognizer import Recognizer

    if args.folder and (args.style != "canvas" or args.pen is not None or args.pad != 280):
        raise UsageError("--style, --pen and --pad only apply with --strokes")
    if args.pen is not None and args.pen <= 0 or args.pad < 28:
        raise UsageError("--pen must be above 0 and --pad at least 28 pixels")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    recognizer = Recognizer.load(weights_dir(args), backend=args.inference)
    mode = numbers if args.number else labelled
    if args.number:
        result = numbers.evaluate_numbers(recognizer, args.folder, limit=args.limit)
    elif args.folder:
        result = labelled.evaluate_folder(recognizer, args.folder, limit=args.limit)
    else:
        result = labelled.evaluate_strokes(recognizer, args.strokes, size=args.pad, pen=args.pen,
                                           style=args.style, limit=args.limit)
    if args.report:
        for path in mode.write_report(result, args.report):
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result.to_json()) if args.json else mode.format_text(result))
    if result.unreadable:
        print(f"digitrec evaluate: {len(result.unreadable)} image(s) could not be read",
              file=sys.stderr)
        return 3
    return 0


def calibrate(args: argparse.Namespace) -> int:
    """The abstention threshold on shifted (default) or clean validation images →
    calibration.json in --out."""
    from digitrec.data.mnist import load_mnist
    from digitrec.evaluation.calibrate import SHIFTED_NOTE, calibrate_threshold, shifted_validation
    from digitrec.recognizer import THRESHOLD_FILE, Recognizer

    source = weights_dir(args)
    images, labels = load_mnist(args.data_dir).split("val")
    split = "validation (last 5,000 training images)"
    if args.on == "shifted":
        images, labels = shifted_validation(images, labels)
        split = SHIFTED_NOTE
    recognizer = Recognizer.load(source)
    calibration = calibrate_threshold(recognizer.member_probabilities(images), labels,
                                      error_cost=args.error_cost)
    calibration["split"] = split
    calibration["inference"] = recognizer.inference
    out = derived_files_dir(args, source) / THRESHOLD_FILE
    out.write_text(json.dumps(calibration, indent=2) + "\n")
    print(json.dumps(calibration, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def compare(args: argparse.Namespace) -> int:
    """SVM vs MLP vs CNNs vs the ensemble: report and plots in --out."""
    from digitrec.evaluation.compare import run_comparison
    from digitrec.evaluation.report import format_table, write_report

    comparison = run_comparison(quick=args.quick, weights=weights_dir(args),
                                data_dir=args.data_dir, threads=args.threads)
    for path in write_report(comparison, args.out):
        print(f"wrote {path}", file=sys.stderr)
    print(format_table(comparison))
    return 0
