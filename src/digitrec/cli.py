"""The `digitrec` command: data fetch, train, train-ensemble, evaluate, predict, compare, serve."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BUNDLED_SET = {  # the bundled ensemble: member -> epochs
    "cnn1": 15,
    "cnnbn": 20,
    "cnn5": 12,
    "vgg8": 12,
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
            "augment": args.augment, "elastic": args.elastic, "limit": args.limit,
            "full": args.full, "data_dir": args.data_dir, "threads": args.threads}


def _report_trained(name: str, result, out: Path) -> None:
    card = result.card
    print(f"{name}: test accuracy {card['test_accuracy']:.4f}, "
          f"{card['training_seconds']:.0f}s → {out / (name + '.safetensors')}")


def _cmd_train(args: argparse.Namespace) -> int:
    from digitrec.train import train_and_save
    out = Path(args.out)
    result = train_and_save(args.model, out, half=args.half, epochs=args.epochs,
                            **_train_kwargs(args))
    _report_trained(args.model, result, out)
    return 0


def _cmd_train_ensemble(args: argparse.Namespace) -> int:
    from digitrec.train import train_and_save
    out = Path(args.out)
    for name in args.members or BUNDLED_SET:
        result = train_and_save(name, out, half=args.half,
                                epochs=args.epochs or BUNDLED_SET.get(name, 15),
                                **_train_kwargs(args))
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


def _add_train_options(parser: argparse.ArgumentParser, epochs_default: int | None) -> None:
    parser.add_argument("--epochs", type=int, default=epochs_default)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak one-cycle learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="random affine augmentation (default on)")
    parser.add_argument("--elastic", action=argparse.BooleanOptionalAction, default=False,
                        help="elastic distortion on top of the affine (default off)")
    parser.add_argument("--limit", type=int, help="train on the first N images only")
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
    train.add_argument("--model", required=True, choices=list_models())
    _add_train_options(train, 15)
    train.set_defaults(func=_cmd_train)

    ens = sub.add_parser("train-ensemble", help="train the bundled set of models in one go")
    ens.add_argument("--members", nargs="+", choices=list_models())
    _add_train_options(ens, None)
    ens.set_defaults(func=_cmd_train_ensemble)

    ev = sub.add_parser("evaluate", help="accuracy of each member and the ensemble on the test set")
    ev.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--report", help="write confusion-matrix and error-gallery PNGs here")
    ev.add_argument("--limit", type=int, help="first N test images only")
    _add_data_dir(ev)
    ev.set_defaults(func=_cmd_evaluate)

    srv = sub.add_parser("serve", help="run the web app (gunicorn; Flask's dev server with --dev)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--workers", type=int, help="gunicorn worker processes "
                     "(default: one per core, at most 4)")
    srv.add_argument("--threads", type=int, help="threads per worker (default 2)")
    srv.add_argument("--weights", help="directory of models (default: the bundled ensemble)")
    srv.add_argument("--dev", action="store_true", help="Flask's development server instead")
    srv.set_defaults(func=_cmd_serve)
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
