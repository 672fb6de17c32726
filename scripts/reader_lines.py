"""How exactly sequence readers read synthetic validation lines (MNIST's validation digits),
plain and with continental-style 1s, 7s, 0s and 9s (training.styles): 1,000 seeded lines each,
the same lines for every reader, so readers can be compared without DigiLeTs.

    .venv/bin/python scripts/reader_lines.py src/digitrec/weights/reader OTHER_READER_DIR ...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from digitrec.data.mnist import load_mnist
from digitrec.models.sequence import load_reader
from digitrec.training.reader import exact_match, synthetic_lines

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readers", nargs="+", help="reader directories (reader.safetensors)")
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20_000)
    args = parser.parse_args()
    images, labels = load_mnist(os.environ.get("DIGITREC_DATA")
                                or REPO.parent / "shared" / "mnist").split("val")
    sets = {share: synthetic_lines(images, labels, args.lines, args.seed, styles=share)
            for share in (0.0, 1.0)}
    print("| reader | plain lines | continental 1/7/0/9 (--styles 1.0) |\n|---|---:|---:|")
    for directory in args.readers:
        loaded = load_reader(directory)
        if loaded is None:
            parser.error(f"no reader in {directory}")
        model, _ = loaded
        plain, styled = (exact_match(model, sets[share]) for share in (0.0, 1.0))
        print(f"| {directory} | {plain:.1%} | {styled:.1%} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
