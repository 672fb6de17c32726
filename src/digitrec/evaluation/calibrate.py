"""The abstention threshold: under it the ensemble says "not sure" instead of guessing, chosen
on held-out images by the cost of a wrong answer relative to abstaining. The images are MNIST
validation as new writers shift it (`shifted_validation`), not MNIST's clean digits alone, on
which almost nothing is uncertain and the threshold falls to the bottom of its range."""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

SHIFTED_NOTE = ("MNIST validation (last 5,000 training images) three ways: as they are; every 1, "
                "7, 0 and 9 restyled as continental writers write them (flag, crossbar, slash, "
                "tail; training.styles); each drawn again with a random fat, fine or tiny pen and "
                "read back through preprocess (data.synth.pen_and_size)")


def shifted_validation(images: np.ndarray, labels: np.ndarray, seed: int = 0,
                       progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Held-out 28x28 digits shifted the ways real writers shift them (SHIFTED_NOTE), seeded:
    the originals, restyled 1s, 7s, 0s and 9s, and a pen-and-size rendering of each preprocessed
    (a rendering left with no ink is dropped)."""
    from digitrec.data.synth import pen_and_size
    from digitrec.errors import InputError
    from digitrec.preprocess import preprocess
    from digitrec.training.styles import FRACTIONS, restyle

    rng = np.random.default_rng(seed)
    styled = [i for i in range(len(labels)) if int(labels[i]) in FRACTIONS]
    out_x = [images, np.stack([restyle(images[i], int(labels[i]), rng) for i in styled])
             if styled else images[:0]]
    out_y = [labels, labels[styled]]
    drawn_x, drawn_y = [], []
    for i in tqdm(range(len(labels)), desc="shifted validation", disable=not progress,
                  leave=False, file=sys.stderr):
        try:
            drawn_x.append(preprocess(pen_and_size(images[i], rng)))
        except InputError:
            continue
        drawn_y.append(labels[i])
    if drawn_x:
        out_x.append(np.stack(drawn_x))
        out_y.append(np.asarray(drawn_y, dtype=labels.dtype))
    return np.concatenate(out_x), np.concatenate(out_y)


def calibrate_threshold(member_probabilities: np.ndarray, labels: np.ndarray,
                        error_cost: float = 5.0) -> dict:
    """Pick the confidence threshold under which the ensemble abstains, on held-out images.

    Among images where the members agree, abstaining costs 1 and accepting a wrong answer costs
    `error_cost`; the threshold minimising the total is returned with its error/abstention rates.
    """
    mean = member_probabilities.mean(axis=0)
    predicted = mean.argmax(axis=1)
    confidence = mean.max(axis=1)
    agree = (member_probabilities.argmax(axis=2) == predicted).all(axis=0)
    wrong = predicted != labels
    best = None
    for threshold in np.round(np.arange(0.30, 0.996, 0.005), 3):
        accepted = agree & (confidence >= threshold)
        cost = float((~accepted).sum() + error_cost * (accepted & wrong).sum())
        if best is None or cost < best[0]:
            best = (cost, threshold, accepted)
    _, threshold, accepted = best
    return {"threshold": float(threshold), "error_cost": error_cost, "n": int(len(labels)),
            "abstention_rate": float(1 - accepted.mean()),
            "accepted_error_rate": float((accepted & wrong).sum() / max(accepted.sum(), 1)),
            "members_disagree_rate": float(1 - agree.mean())}
