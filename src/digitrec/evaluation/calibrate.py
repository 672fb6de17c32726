"""The abstention threshold: under it the ensemble says "not sure" instead of guessing, chosen
on held-out images by the cost of a wrong answer relative to abstaining."""

from __future__ import annotations

import numpy as np


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
