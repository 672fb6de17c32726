"""The `digitrec` command: data fetch, train, train-ensemble, evaluate, calibrate, quantize,
predict, compare, serve, export, feedback, finetune.

Building the parser imports nothing heavy (no torch): each sub-command's module is imported
only when it runs. Known errors (digitrec.errors) print one line and exit with their code (2
usage or data, 3 input, 4 model); `--debug` shows the traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from digitrec import __version__
from digitrec.config import BACKEND_NAMES
from digitrec.errors import DigitrecError, UsageError

# The registered architectures (digitrec.models.list_models(), which imports torch; a test keeps
# the two equal) and the bundled members (digitrec.training.recipes).
ARCHITECTURES = ("cnn1", "cnn5", "cnnbn", "fastnet", "vgg8")
BUNDLED_MEMBERS = ("cnnbn", "vgg8b", "vgg8c")
# Libraries of the optional extras (pyproject.toml), by the extra that installs them.
EXTRAS = {"flask": "web", "gunicorn": "web", "werkzeug": "web", "matplotlib": "train",
          "sklearn": "compare", "sqlalchemy": "db", "alembic": "db", "psycopg": "db"}


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="MNIST directory (default: $DIGITREC_DATA, "
                        "else ~/.cache/digitrec/mnist)")


def _add_weights(parser: argparse.ArgumentParser, what: str = "models") -> None:
    parser.add_argument("--weights", help=f"directory of {what} (default: $DIGITREC_WEIGHTS, "
                        "else the bundled ensemble)")


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="database of corrections: sqlite:///PATH "
                        "or postgresql+psycopg://USER@HOST/DB (default: $DIGITREC_DB_URL, else "
                        "feedback.sqlite3 under $DIGITREC_HOME)")


def _add_inference(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inference", choices=BACKEND_NAMES,
                        help="inference backend (default: $DIGITREC_INFERENCE, else what the "
                        "web app serves: int8 when the weights carry int8.json, else onnx)")


def _add_out(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--out", help=f"directory to write {what} and a copy of the weights to "
                        "(default: beside --weights when given, else under $DIGITREC_HOME; "
                        "never into the installed package)")


def _fraction(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _alpha(text: str) -> float | None:
    """argparse type: "auto" (None) or a number in (0, 1]."""
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number in (0, 1], got {text!r}"
                                         ) from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number in (0, 1], got {text}")
    return value


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
    parser.add_argument("--distill", type=_fraction, default=0.0, metavar="WEIGHT",
                        help="with --init or --from: add WEIGHT x a distillation loss toward the "
                        "starting weights on MNIST's own images (keeps what they knew; default 0)")
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    parser.add_argument("--real-input", type=_fraction, default=0.0, metavar="FRACTION",
                        help="add this fraction of extra images drawn with a random fat, fine "
                        "or tiny pen and preprocessed like real input (default 0)")
    parser.add_argument("--full", action="store_true",
                        help="train on all 60,000 (validation is then not held out)")
    parser.add_argument("--half", action="store_true", help="store weights as float16")
    parser.add_argument("--torch-threads", "--threads", dest="threads", type=int,
                        help="torch CPU threads")
    parser.add_argument("--out", default="runs", help="output directory (default: runs)")
    _add_data_dir(parser)
    _add_scaling(parser, "OUT/checkpoints")


def _add_scaling(parser: argparse.ArgumentParser, checkpoint_home: str) -> None:
    """Checkpoints, resuming, and --nproc / --max-restarts: any training command's."""
    parser.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                        help="checkpoint every STEPS optimizer steps (default: each epoch)")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help=f"where checkpoints go (default: {checkpoint_home}; one "
                        "sub-directory per model, only its last complete checkpoint kept)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint (without it a run "
                        "starts afresh; a torchrun restart resumes by itself)")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="train as N ranks on this machine (torchrun's elastic agent, "
                        "DistributedDataParallel; the global batch and lr stay the recipe's)")
    parser.add_argument("--max-restarts", type=int, metavar="R",
                        help="with --nproc: restart all ranks up to R times when one fails, "
                        "resuming from the last checkpoint (default 0)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job."""
    parser = argparse.ArgumentParser(prog="digitrec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (for bug reports)")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="manage the MNIST files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download MNIST from public mirrors, verified")
    fetch.add_argument("--mirror", action="append", help="mirror base URL (repeatable)")
    _add_data_dir(fetch)
    fetch.set_defaults(run="data:fetch")

    train = sub.add_parser("train", help="train one model")
    train.add_argument("--model", metavar="ARCH", help="architecture (required, except with "
                       f"--fast: fastnet): {', '.join(ARCHITECTURES)}")
    train.add_argument("--fast", action="store_true",
                       help="the FAST recipe (digitrec.training.recipes: fastnet, 1.5 epochs, "
                       "SGD one-cycle, no augmentation; --batch-size, --lr, --augment do not "
                       "apply)")
    train.add_argument("--name", help="file name of the saved model (default: the architecture)")
    train.add_argument("--init", metavar="SAFETENSORS",
                       help="start from these weights (fine-tuning) instead of random ones")
    _add_train_options(train, None)
    train.set_defaults(run="train:train")

    ens = sub.add_parser("train-ensemble", help="train the bundled set of models in one go",
                         description="Train the bundled members with their recipes (seed, "
                         "augmentation and epochs per member override the flags), then fine-tune "
                         "each with real-input renderings; --epochs overrides all and skips the "
                         "fine-tuning. Other names train one architecture with the flags.")
    ens.add_argument("--members", nargs="+", metavar="NAME",
                     help=f"bundled members ({', '.join(BUNDLED_MEMBERS)}) or architectures "
                     "(default: the bundled members)")
    ens.add_argument("--from", dest="start", metavar="DIR",
                     help="instead of training the bundled members afresh, fine-tune their "
                     "weights in DIR (e.g. src/digitrec/weights) with continental-style digits "
                     "added (recipes.STYLE_FINE_TUNE, training/styles.py)")
    _add_train_options(ens, None)
    ens.set_defaults(run="train:train_ensemble")

    reader = sub.add_parser("train-reader", help="train the sequence reader of whole numbers "
                            "(CTC on synthetic lines composed from MNIST)")
    reader.add_argument("--steps", type=int, default=6000)
    reader.add_argument("--batch-size", type=int, default=64)
    reader.add_argument("--lr", type=float, default=2e-3, help="peak one-cycle learning rate")
    reader.add_argument("--seed", type=int, default=0)
    reader.add_argument("--styles", type=float, default=0.0, metavar="SHARE",
                        help="redraw this share (times each digit's fraction) of the lines' "
                        "1s, 7s, 0s and 9s in continental style (default 0)")
    reader.add_argument("--init", metavar="DIR", help="start from the reader in DIR")
    reader.add_argument("--torch-threads", "--threads", dest="threads", type=int,
                        help="torch CPU threads")
    reader.add_argument("--out", default="runs/reader", help="output directory "
                        "(default: runs/reader)")
    _add_data_dir(reader)
    reader.set_defaults(run="train:train_reader")

    ev = sub.add_parser("evaluate", help="accuracy of each member and the ensemble on the test "
                        "set, or on your own labelled digits (--folder, --strokes)")
    _add_weights(ev)
    _add_inference(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--report", help="write confusion-matrix and error-gallery PNGs here")
    ev.add_argument("--limit", type=int, help="first N test images (or digits) only")
    _add_data_dir(ev)
    own = ev.add_mutually_exclusive_group()
    own.add_argument("--folder", metavar="DIR", help="your labelled images instead of MNIST: "
                     "labels.csv (file,label), *_<label>.png names (any image type) or "
                     "subfolders named by the label")
    own.add_argument("--strokes", metavar="FILE", help="pen strokes instead of MNIST (JSON lines "
                     "as DigiLeTs: writer, label, strokes), drawn as the page's pad draws them")
    ev.add_argument("--number", action="store_true", help="with --folder: each image holds a "
                    "whole number (labels like 0042, kept as written), read as predict --number "
                    "reads it; reports exact match, per-digit accuracy, per length")
    ev.add_argument("--style", choices=("canvas", "bold", "thin"), default="canvas",
                    help="with --strokes: the page's canvas (default), or a scan of a bold or a "
                    "thin pen")
    ev.add_argument("--pen", type=float, metavar="PX", help="with --strokes: pen width in pixels "
                    "(default: the page's, 23, on the canvas)")
    ev.add_argument("--pad", type=int, default=280, metavar="PX",
                    help="with --strokes: side of the pad or scan in pixels (default 280)")
    ev.set_defaults(run="evaluate:evaluate")

    cal = sub.add_parser("calibrate", help="choose the abstention threshold on shifted "
                         "validation images")
    _add_weights(cal)
    _add_out(cal, "calibration.json")
    cal.add_argument("--error-cost", type=float, default=5.0,
                     help="cost of a wrong accepted answer relative to abstaining (default 5)")
    cal.add_argument("--on", choices=("shifted", "validation"), default="shifted",
                     help="shifted (default): MNIST validation as it is, with continental 1s, "
                     "7s and 0s, and redrawn with random pens, as new writers shift it; "
                     "validation: the clean 5,000 alone")
    _add_data_dir(cal)
    cal.set_defaults(run="evaluate:calibrate")

    qu = sub.add_parser("quantize", help="record int8 ranges of the ensemble (int8.json; the "
                        "web app serves int8 when the weights carry it)",
                        description="Record int8 activation ranges of the ensemble's ONNX "
                        "graph on the first MNIST training images, measure the int8 graph on "
                        "the test set, and write int8.json (with --out) when it scores "
                        "at least 99.65% and agrees with fp32 on at least 99.9% of the test "
                        "images (exit status 1 otherwise).")
    _add_weights(qu)
    _add_out(qu, "int8.json")
    qu.add_argument("--images", type=int, default=1000,
                    help="calibration images, the first of the training split (default 1000)")
    _add_data_dir(qu)
    qu.set_defaults(run="models:quantize")

    pr = sub.add_parser("predict", help="read the digit (or number) in image files")
    pr.add_argument("files", nargs="+", help="image files or directories (walked)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.add_argument("--number", action="store_true", help="read a whole number per image")
    _add_weights(pr)
    _add_inference(pr)
    pr.set_defaults(run="predict:run")

    srv = sub.add_parser("serve", help="run the web app (gunicorn; Flask's dev server with --dev)")
    srv.add_argument("--host", help="address to listen on (default: $DIGITREC_HOST, else "
                     "127.0.0.1)")
    srv.add_argument("--port", type=int, help="port (default: $DIGITREC_PORT, else 8000)")
    srv.add_argument("--workers", type=int, help="gunicorn worker processes "
                     "(default: $DIGITREC_WORKERS, else one per core, at most 4)")
    srv.add_argument("--worker-threads", "--threads", dest="threads", type=int,
                     help="request threads per worker (default 1: gunicorn's sync worker; more: "
                     "its gthread worker, with keep-alive)")
    _add_weights(srv)
    _add_inference(srv)
    _add_db(srv)
    srv.add_argument("--dev", action="store_true", help="Flask's development server instead")
    srv.set_defaults(run="serve:serve")

    fb = sub.add_parser("feedback", help="the corrections database: stats, export, import, purge")
    fb_sub = fb.add_subparsers(dest="feedback_command", required=True)
    fb_stats = fb_sub.add_parser("stats", help="counts by label, model version, confusion")
    fb_stats.add_argument("--json", action="store_true", help="print one JSON object")
    fb_exp = fb_sub.add_parser("export", help="write <id>_<label>.png files and labels.csv")
    fb_exp.add_argument("dir", help="folder to write to (created)")
    fb_imp = fb_sub.add_parser("import", help="store a folder of labelled images (an export, "
                               "or *_<label>.png) as corrections, read by the models")
    fb_imp.add_argument("dir", help="folder with labels.csv, or *_<label>.png files")
    _add_weights(fb_imp)
    _add_inference(fb_imp)
    fb_purge = fb_sub.add_parser("purge", help="delete corrections stored before a date")
    fb_purge.add_argument("--before", required=True, metavar="DATE",
                          help="a date (2026-01-31: midnight UTC) or ISO time")
    for command, function in ((fb_stats, "stats"), (fb_exp, "export"),
                              (fb_imp, "import_folder"), (fb_purge, "purge")):
        _add_db(command)
        command.set_defaults(run=f"feedback:{function}")

    ft = sub.add_parser("finetune", help="fine-tune the ensemble on the stored corrections "
                        "(with MNIST replay); refuses a model that loses on MNIST test",
                        description="Fine-tune each member of the ensemble (--weights) on the "
                        "corrections in the database mixed with MNIST replay, measure it before "
                        "and after on the MNIST test set and on a held-out part of the "
                        "corrections, and write the new weights and model cards to --out, unless "
                        "MNIST test accuracy drops by more than --max-mnist-drop points (exit "
                        "status 4, nothing written). Serve it with `digitrec serve --weights "
                        "DIR`.")
    ft.add_argument("--out", required=True, help="new directory for the fine-tuned weights")
    _add_weights(ft, "the models to start from")
    _add_db(ft)
    ft.add_argument("--steps", type=int, default=150,
                    help="optimizer steps per member (default 150: 2-3 minutes for the "
                    "bundled three on 2 quiet cores)")
    ft.add_argument("--replay", type=_fraction, default=8.0, metavar="RATIO",
                    help="MNIST training images per correction image in the mix (default 8)")
    ft.add_argument("--holdout", type=_fraction, default=0.2, metavar="FRACTION",
                    help="fraction of the corrections held out for measuring, chosen at random "
                    "with --seed (default 0.2)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--max-mnist-drop", type=float, default=0.1, metavar="POINTS",
                    help="refuse a model whose MNIST test accuracy falls by more (default 0.1)")
    ft.add_argument("--lr", type=float, help="peak learning rate (default: the CORRECTIONS "
                    "recipe's, 1e-4)")
    ft.add_argument("--batch-size", type=int, help="default: the recipe's, 128")
    ft.add_argument("--distill", type=_fraction, metavar="WEIGHT",
                    help="add WEIGHT x a distillation loss toward each member's starting weights "
                    "on the MNIST replay images (default: the CORRECTIONS recipe's)")
    ft.add_argument("--interpolate", type=_alpha, default=None, metavar="auto|ALPHA",
                    help="move the weights ALPHA of the way from the base to the fine-tuned ones "
                    "(WiSE-FT; 1: all the way); auto (default): the first of 1, 0.75, 0.5, 0.25 "
                    "that keeps MNIST validation within half of --max-mnist-drop")
    ft.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                    help="re-record int8 ranges for the new weights when the base has them "
                    "(default on; off: the new weights are served in fp32)")
    ft.add_argument("--limit-mnist-test", type=int, metavar="N",
                    help="measure on the first N MNIST test images only (quick checks)")
    _add_inference(ft)
    _add_data_dir(ft)
    _add_scaling(ft, ".OUT.checkpoints beside OUT, removed when the run ends")
    ft.set_defaults(run="finetune:run")

    cmp = sub.add_parser("compare", help="SVM vs MLP vs each CNN vs the ensemble: report + plots")
    cmp.add_argument("--quick", action="store_true",
                     help="small subsets, one epoch, every model trained fresh (about a minute)")
    cmp.add_argument("--out", default="docs/comparison", help="report directory")
    _add_weights(cmp, "trained CNNs")
    cmp.add_argument("--torch-threads", "--threads", dest="threads", type=int,
                     help="torch CPU threads")
    _add_data_dir(cmp)
    cmp.set_defaults(run="evaluate:compare")

    exp = sub.add_parser("export", help="write the ensemble as one ONNX graph, checked against "
                         "the reference on MNIST test images",
                         description="Write the ensemble as one ONNX graph (input \"x\": float "
                         "(N, 1, 28, 28) normalised as for training; output \"p\": (members, N, "
                         "10) per-member softmax probabilities), then run the file with "
                         "onnxruntime on the first 1,000 MNIST test images: exit status 1 "
                         "unless it predicts exactly what the reference ensemble predicts.")
    exp.add_argument("--onnx", action="store_true", help="ONNX format (required: the only one)")
    _add_weights(exp)
    exp.add_argument("--out", default="ensemble.onnx",
                     help="output file (default: ensemble.onnx in the current directory)")
    _add_data_dir(exp)
    exp.set_defaults(run="models:export")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `digitrec` console script: the command's exit status."""
    args = build_parser().parse_args(argv)
    module, function = args.run.split(":")
    if getattr(args, "db", None):  # --db: for this process and the server's workers
        os.environ["DIGITREC_DB_URL"] = args.db
    try:
        from digitrec.config import read
        settings = read()  # a bad DIGITREC_* value is reported before any work starts
        if settings.torch_threads:
            import torch
            torch.set_num_threads(settings.torch_threads)
        command = getattr(importlib.import_module(f"digitrec.cli.{module}"), function)
        return command(args)
    except DigitrecError as exc:
        if args.debug:
            raise
        prefix = f"digitrec {args.command}" if isinstance(exc, UsageError) else "digitrec"
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None or args.debug:
            raise
        print(f"digitrec {args.command}: error: this needs {exc.name}, which the [{extra}] extra "
              f"installs: pip install 'digitrec[{extra}]'", file=sys.stderr)
        return UsageError.exit_code
    except KeyboardInterrupt:
        print("digitrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
