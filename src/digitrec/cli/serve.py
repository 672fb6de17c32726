"""`digitrec serve`."""

from __future__ import annotations

import argparse


def serve(args: argparse.Namespace) -> int:
    """The web app with gunicorn (or Flask's development server with --dev)."""
    from digitrec.cli.models import weights_dir
    from digitrec.web.gunicorn_conf import serve as run_server

    run_server(host=args.host, port=args.port, workers=args.workers, threads=args.threads,
               weights=str(weights_dir(args)), inference=args.inference, dev=args.dev)
    return 0
