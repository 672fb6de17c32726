"""Ensemble accuracy on MNIST digits rendered under robustness conditions and read back through
`preprocess`, for one or more model directories side by side. Used to decide fine-tuning rounds
on the validation split (docs/training.md); the full benchmark is benchmarks/robustness.py.

usage: python scripts/condition_accuracy.py DIR [DIR ...] [--split val|test] [--limit N]
                                            [--conditions plain thin ...]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from digitrec.data.mnist import load_mnist
from digitrec.data.synth import CONDITIONS
from digitrec.models import load_ensemble
from digitrec.preprocess import preprocess
from digitrec.training.loop import predict_proba


def main() -> None:
    """Print a Markdown table: one row per model directory, one column per condition."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="model directories (*.safetensors + cards)")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--limit", type=int, help="first N images of the split")
    parser.add_argument("--conditions", nargs="+", default=["plain", "thin", "thick", "small"],
                        help="'plain' (the split as is) and names from "
                        "digitrec.data.synth.CONDITIONS")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = load_mnist().split(args.split)
    images, labels = images[:args.limit], labels[:args.limit]
    rendered = {}
    for name in tqdm(args.conditions, desc="rendering"):
        if name == "plain":
            rendered[name] = np.asarray(images)
        else:
            rng = np.random.default_rng(0)
            rendered[name] = np.stack([preprocess(CONDITIONS[name](x, rng)) for x in images])
    print(f"{args.split} split, {len(labels):,} images\n")
    print("| models | " + " | ".join(args.conditions) + " |")
    print("|---|" + "---:|" * len(args.conditions))
    for directory in args.dirs:
        ensemble, _ = load_ensemble(directory)
        cells = [f"{(predict_proba(ensemble, x).argmax(1) == labels).mean():.2%}"
                 for x in rendered.values()]
        print(f"| {directory} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
