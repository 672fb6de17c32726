"""The `digitrec` command: data fetch, train, train-ensemble, evaluate, predict, compare, serve,
export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGITREC_DATA, "
                        "else ~/.cache/digitrec/mnist)")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from digitrec.data import MIRRORS, fetch
    fetch(args.data_dir, mirrors=tuple(args.mirror) if args.mirror else MIRRORS)
    return 0


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


def _cmd_train_fast(args: argparse.Namespace) -> int:
    from digitrec.models import save_model
    from digitrec.train import train_fast
    out, arch = Path(args.out), args.model or "fastnet"
    result = train_fast(arch, epochs=args.epochs or 1.5, seed=args.seed, limit=args.limit,
                        full=args.full, data_dir=args.data_dir, threads=args.threads)
    save_model(result.model, out, arch, result.card, half=args.half)
    _report_trained(arch, result, out)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from digitrec.train import train_and_save
    if args.fast:
        return _cmd_train_fast(args)
    if args.model is None:
        print("digitrec train: error: --model is required (or use --fast)", file=sys.stderr)
        return 2
    if args.init:
        problem = _init_problem(Path(args.init), args.model)
        if problem:
            print(f"digitrec train: error: {problem}", file=sys.stderr)
            return 2
    out = Path(args.out)
    name = args.name or args.model
    result = train_and_save(args.model, out, half=args.half, name=name,
                            epochs=args.epochs or 15, init=args.init, **_train_kwargs(args))
    _report_trained(name, result, out)
    return 0


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


def _fraction(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _cmd_train_ensemble(args: argparse.Namespace) -> int:
    from digitrec.train import train_and_save
    out = Path(args.out)
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from digitrec.evaluate import evaluate_ensemble, format_text, write_report
    result = evaluate_ensemble(args.weights, data_dir=args.data_dir, limit=args.limit)
    if args.report:
        for path in write_report(result, args.report):
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result.to_json()) if args.json else format_text(result))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from digitrec.web.gunicorn_conf import serve
    serve(host=args.host, port=args.port, workers=args.workers, threads=args.threads,
          weights=args.weights, dev=args.dev)
    return 0


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def _expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given; directories walked for image files, in sorted order."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def _prediction_line(file: str, prediction, as_json: bool) -> str:
    if as_json:
        digit = None if prediction.abstained else prediction.digit
        return json.dumps({"file": file, "digit": digit,
                           "best_guess": prediction.digit, "confidence": prediction.confidence,
                           "probabilities": prediction.probabilities,
                           "abstained": prediction.abstained, "reason": prediction.reason})
    if prediction.abstained:
        return (f"{file}: not sure ({prediction.reason}; best guess {prediction.digit} "
                f"at {prediction.confidence:.1%})")
    return f"{file}: {prediction.digit} ({prediction.confidence:.1%})"


def _number_line(file: str, reading, as_json: bool) -> str:
    if as_json:
        return json.dumps({"file": file, "number": reading.number,
                           "confidence": reading.confidence, "abstained": reading.abstained,
                           "digits": [{"digit": d.digit, "confidence": d.confidence,
                                       "probabilities": d.probabilities,
                                       "abstained": d.abstained, "box": list(box)}
                                      for d, box in zip(reading.digits, reading.boxes,
                                                        strict=True)]})
    flag = " (not sure)" if reading.abstained else ""
    return f"{file}: {reading.number}{flag} ({reading.confidence:.1%})"


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from digitrec.preprocess import InputError, preprocess
    from digitrec.recognizer import Recognizer

    recognizer = Recognizer.load(args.weights)
    files = _expand_inputs(args.files)
    failed = 0

    def report_error(file: Path, exc: Exception) -> None:
        nonlocal failed
        failed += 1
        message = str(exc) or type(exc).__name__
        print(json.dumps({"file": str(file), "error": message}) if args.json
              else f"{file}: error: {message}", flush=True)

    show_bar = len(files) > 50
    if args.number:
        for file in tqdm(files, disable=not show_bar, desc="reading", file=sys.stderr):
            try:
                print(_number_line(str(file), recognizer.read_number(file), args.json), flush=True)
            except (InputError, OSError) as exc:
                report_error(file, exc)
        return 1 if failed else 0

    batch_size = 256
    for start in tqdm(range(0, len(files), batch_size), disable=not show_bar,
                      desc=f"predicting {len(files)} files", file=sys.stderr):
        batch = files[start:start + batch_size]
        images, errors = {}, {}
        for k, file in enumerate(batch):
            try:
                images[k] = preprocess(file)
            except (InputError, OSError) as exc:
                errors[k] = exc
        predictions = dict(zip(images, recognizer.classify(np.stack(list(images.values()))),
                               strict=True)) if images else {}
        for k, file in enumerate(batch):  # in input order
            if k in errors:
                report_error(file, errors[k])
            else:
                print(_prediction_line(str(file), predictions[k], args.json), flush=True)
    return 1 if failed else 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from digitrec.data import load_mnist
    from digitrec.evaluate import calibrate_threshold, member_probabilities
    from digitrec.models import BUNDLED_DIR, load_ensemble

    directory = Path(args.weights) if args.weights else BUNDLED_DIR
    images, labels = load_mnist(args.data_dir).split("val")
    ensemble, _ = load_ensemble(directory)
    calibration = calibrate_threshold(member_probabilities(ensemble, images), labels,
                                      error_cost=args.error_cost)
    calibration["split"] = "validation (last 5,000 training images)"
    (directory / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
    print(json.dumps(calibration, indent=2))
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from digitrec import quantize
    from digitrec.data import load_mnist
    from digitrec.models import BUNDLED_DIR, load_ensemble

    if args.images < 1:
        print(f"digitrec quantize: error: --images must be at least 1, got {args.images}",
              file=sys.stderr)
        return 2
    directory = Path(args.weights) if args.weights else BUNDLED_DIR
    ensemble, _ = load_ensemble(directory)
    mnist = load_mnist(args.data_dir)
    calibration = quantize.calibrate(ensemble, mnist.split("train")[0][:args.images],
                                     mnist.test_images, mnist.test_labels)
    print(f"int8 ({calibration['calibration_images']} for calibration): test accuracy "
          f"{calibration['test_accuracy']:.2%} (fp32 {calibration['test_accuracy_fp32']:.2%}), "
          f"same prediction as fp32 on {calibration['test_agreement_with_fp32']:.2%} of "
          f"{calibration['test_images']:,} test images")
    if not quantize.calibrated_enough(calibration):
        print(f"digitrec quantize: error: below the bar for serving (accuracy "
              f"{quantize.MIN_ACCURACY:.2%}, agreement {quantize.MIN_AGREEMENT:.1%}): "
              "nothing written", file=sys.stderr)
        return 1
    out = directory / quantize.INT8_FILE
    out.write_text(json.dumps(calibration) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} KB)")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from digitrec.compare import format_table, run_comparison, write_report
    comparison = run_comparison(quick=args.quick, weights=args.weights, data_dir=args.data_dir,
                                threads=args.threads)
    for path in write_report(comparison, args.out):
        print(f"wrote {path}", file=sys.stderr)
    print(format_table(comparison))
    return 0


EXPORT_CHECK_IMAGES = 1000  # `digitrec export` compares the file with the reference on these


def _cmd_export(args: argparse.Namespace) -> int:
    if not args.onnx:
        print("digitrec export: error: choose the format: --onnx (the only one so far)",
              file=sys.stderr)
        return 2
    import numpy as np
    import onnxruntime
    import torch

    from digitrec.data import load_mnist
    from digitrec.fast import export_onnx, onnx_session
    from digitrec.models import load_ensemble
    from digitrec.train import to_tensor

    ensemble, _ = load_ensemble(args.weights)
    images = load_mnist(args.data_dir).test_images[:EXPORT_CHECK_IMAGES]
    path = export_onnx(ensemble, args.out)
    names = list(ensemble.members)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input \"x\" float (N, 1, 28, 28) "
          f"normalised as for training, output \"p\" ({len(names)}, N, 10) per-member "
          f"probabilities of {', '.join(names)}")

    session = onnx_session(path)
    got, want = [], []
    with torch.inference_mode():
        for start in range(0, len(images), 250):
            x = to_tensor(images[start:start + 250])
            got.append(session.run(None, {"x": x.numpy()})[0])
            want.append(ensemble.member_probabilities(x).numpy())
    got, want = np.concatenate(got, axis=1), np.concatenate(want, axis=1)
    same = got.mean(0).argmax(1) == want.mean(0).argmax(1)
    members_same = bool((got.argmax(2) == want.argmax(2)).all())
    difference = float(np.abs(got - want).max())
    members_note = "every member's too" if members_same else "but NOT every member's"
    print(f"checked with onnxruntime {onnxruntime.__version__} on the first {len(images):,} "
          f"MNIST test images against the reference ensemble: {int(same.sum()):,}/"
          f"{len(images):,} predictions identical ({members_note}), largest probability "
          f"difference {difference:.1e}")
    if not (same.all() and members_same):
        print(f"digitrec export: error: {path} does not predict what the reference ensemble "
              "predicts (the file is kept for inspection)", file=sys.stderr)
        return 1
    return 0


def _add_train_options(parser: argparse.ArgumentParser, epochs_default: int | None) -> None:
    parser.add_argument("--epochs", type=int, default=epochs_default)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak one-cycle learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="random affine augmentation (default on)")
    parser.add_argument("--elastic", action=argparse.BooleanOptionalAction, default=False,
                        help="elastic distortion on top of the affine (default off)")
    parser.add_argument("--aug-strength", type=float, default=1.0,
                        help="scale of the affine ranges (1.0: ±12° rotation, ±15%% scale, "
                        "±1.7 px shift, 0.25 shear)")
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    parser.add_argument("--real-input", type=_fraction, default=0.0, metavar="FRACTION",
                        help="add this fraction of extra images drawn with a random fat, fine "
                        "or tiny pen and preprocessed like real input (default 0)")
    parser.add_argument("--full", action="store_true",
                        help="train on all 60,000 (validation is then not held out)")
    parser.add_argument("--half", action="store_true", help="store weights as float16")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", default="runs", help="output directory")
    _add_data_dir(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job."""
    parser = argparse.ArgumentParser(prog="digitrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="manage the MNIST files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download MNIST from public mirrors, verified")
    fetch.add_argument("--mirror", action="append", help="mirror base URL (repeatable)")
    _add_data_dir(fetch)
    fetch.set_defaults(func=_cmd_fetch)

    from digitrec.models import list_models
    train = sub.add_parser("train", help="train one model")
    train.add_argument("--model", choices=list_models(),
                       help="architecture (required, except with --fast: fastnet)")
    train.add_argument("--fast", action="store_true",
                       help="the fast recipe (train_fast: fastnet, 1.5 epochs, SGD one-cycle, no "
                       "augmentation; --batch-size, --lr, --augment do not apply)")
    train.add_argument("--name", help="file name of the saved model (default: the architecture)")
    train.add_argument("--init", metavar="SAFETENSORS",
                       help="start from these weights (fine-tuning) instead of random ones")
    _add_train_options(train, None)
    train.set_defaults(func=_cmd_train)

    ens = sub.add_parser("train-ensemble", help="train the bundled set of models in one go",
                         description="Train the bundled members with their recipes (seed, "
                         "augmentation and epochs per member override the flags), then fine-tune "
                         "each with real-input renderings; --epochs overrides all and skips the "
                         "fine-tuning. Other names train one architecture with the flags.")
    ens.add_argument("--members", nargs="+", choices=sorted(set(list_models()) | set(BUNDLED_SET)))
    _add_train_options(ens, None)
    ens.set_defaults(func=_cmd_train_ensemble)

    ev = sub.add_parser("evaluate", help="accuracy of each member and the ensemble on the test set")
    ev.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--report", help="write confusion-matrix and error-gallery PNGs here")
    ev.add_argument("--limit", type=int, help="first N test images only")
    _add_data_dir(ev)
    ev.set_defaults(func=_cmd_evaluate)

    cal = sub.add_parser("calibrate", help="choose the abstention threshold on validation images")
    cal.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    cal.add_argument("--error-cost", type=float, default=5.0,
                     help="cost of a wrong accepted answer relative to abstaining (default 5)")
    _add_data_dir(cal)
    cal.set_defaults(func=_cmd_calibrate)

    qu = sub.add_parser("quantize", help="calibrate the ensemble for int8 inference (writes "
                        "int8.json beside the weights; the web app serves int8 when it exists)",
                        description="Record int8 activation ranges of the ensemble's ONNX "
                        "graph on the first MNIST training images, measure the int8 graph on "
                        "the test set, and write int8.json beside the weights when it scores "
                        "at least 99.65% and agrees with fp32 on at least 99.9% of the test "
                        "images (exit status 1 otherwise).")
    qu.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    qu.add_argument("--images", type=int, default=1000,
                    help="calibration images, the first of the training split (default 1000)")
    _add_data_dir(qu)
    qu.set_defaults(func=_cmd_quantize)

    pr = sub.add_parser("predict", help="read the digit (or number) in image files")
    pr.add_argument("files", nargs="+", help="image files or directories (walked)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.add_argument("--number", action="store_true", help="read a whole number per image")
    pr.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    pr.set_defaults(func=_cmd_predict)

    srv = sub.add_parser("serve", help="run the web app (gunicorn; Flask's dev server with --dev)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--workers", type=int, help="gunicorn worker processes "
                     "(default: one per core, at most 4)")
    srv.add_argument("--threads", type=int, help="threads per worker (default 1: gunicorn's "
                     "sync worker; more: its gthread worker, with keep-alive)")
    srv.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    srv.add_argument("--dev", action="store_true", help="Flask's development server instead")
    srv.set_defaults(func=_cmd_serve)

    cmp = sub.add_parser("compare", help="SVM vs MLP vs each CNN vs the ensemble: report + plots")
    cmp.add_argument("--quick", action="store_true",
                     help="small subsets, one epoch, every model trained fresh (about a minute)")
    cmp.add_argument("--out", default="docs/comparison", help="report directory")
    cmp.add_argument("--weights", help="directory of trained CNNs (default: the bundled ones)")
    cmp.add_argument("--threads", type=int, help="torch CPU threads")
    _add_data_dir(cmp)
    cmp.set_defaults(func=_cmd_compare)

    exp = sub.add_parser("export", help="write the ensemble as one ONNX graph, checked against "
                         "the reference on MNIST test images",
                         description="Write the ensemble as one ONNX graph (input \"x\": float "
                         "(N, 1, 28, 28) normalised as for training; output \"p\": (members, N, "
                         "10) per-member softmax probabilities), then run the file with "
                         "onnxruntime on the first 1,000 MNIST test images: exit status 1 "
                         "unless it predicts exactly what the reference ensemble predicts.")
    exp.add_argument("--onnx", action="store_true", help="ONNX format (required: the only one)")
    exp.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    exp.add_argument("--out", default="ensemble.onnx",
                     help="output file (default: ensemble.onnx in the current directory)")
    _add_data_dir(exp)
    exp.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `digitrec` console script."""
    from digitrec.data import DataNotFoundError, FetchError, IDXError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataNotFoundError, FetchError, IDXError, FileNotFoundError) as exc:
        print(f"digitrec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
