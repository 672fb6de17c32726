"""Choose the bundled members among trained candidates on the validation split (never the test
set): highest validation accuracy, ties broken by validation log-loss, at least 3 members, at most
10 MB of weights. Prints a Markdown table; the test column is reported, not used.

usage: python scripts/select_ensemble.py CANDIDATE_DIR [--top N]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from digitrec.data.mnist import load_mnist
from digitrec.models import load_ensemble
from digitrec.recognizer import Recognizer

MAX_BYTES = 10 * 1024 * 1024


def main() -> None:
    """Rank every subset of the candidates and print the best ones."""
    parser = argparse.ArgumentParser()
    parser.add_argument("candidates")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    mnist = load_mnist()
    ensemble, cards = load_ensemble(args.candidates)
    recognizer = Recognizer(ensemble, cards, threshold=0.0, backend=ensemble)  # as trained
    names = list(ensemble.members)
    sizes = {n: sum(p.numel() * p.element_size() for p in m.state_dict().values()) // 2
             for n, m in ensemble.members.items()}  # stored as float16
    (val_x, val_y), (test_x, test_y) = mnist.split("val"), mnist.split("test")
    val_p = recognizer.member_probabilities(val_x)
    test_p = recognizer.member_probabilities(test_x)

    print("| member | val accuracy | test accuracy |\n|---|---:|---:|")
    for k, name in enumerate(names):
        print(f"| {name} | {(val_p[k].argmax(1) == val_y).mean():.4f} "
              f"| {(test_p[k].argmax(1) == test_y).mean():.4f} |")
    rows = []
    for r in range(3, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), r):
            chosen = list(subset)
            size = sum(sizes[names[i]] for i in chosen)
            if size > MAX_BYTES:
                continue
            p = val_p[chosen].mean(0)
            accuracy = (p.argmax(1) == val_y).mean()
            log_loss = -np.log(p[np.arange(len(val_y)), val_y] + 1e-12).mean()
            test = (test_p[chosen].mean(0).argmax(1) == test_y).mean()
            rows.append((accuracy, -log_loss, [names[i] for i in chosen], test, size))
    rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
    print("\n| rank | members | val accuracy | val log-loss | test accuracy | MB |")
    print("|---:|---|---:|---:|---:|---:|")
    for rank, (accuracy, neg_loss, members, test, size) in enumerate(rows[:args.top], 1):
        print(f"| {rank} | {', '.join(members)} | {accuracy:.4f} | {-neg_loss:.4f} "
              f"| {test:.4f} | {size / 2**20:.1f} |")


if __name__ == "__main__":
    main()
