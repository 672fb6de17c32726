"""`digitrec data fetch`."""

from __future__ import annotations

import argparse


def fetch(args: argparse.Namespace) -> int:
    from digitrec.data.mnist import MIRRORS
    from digitrec.data.mnist import fetch as fetch_mnist
    fetch_mnist(args.data_dir, mirrors=tuple(args.mirror) if args.mirror else MIRRORS)
    return 0
