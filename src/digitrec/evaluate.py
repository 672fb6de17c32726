"""Test-set evaluation of every member and of the ensemble: accuracy, per-class precision and
recall, confusion matrix, misclassified indices, and PNG reports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from digitrec.data import load_mnist
from digitrec.models import Ensemble, load_ensemble
from digitrec.train import to_tensor


@dataclass
class Metrics:
    """Classification metrics of one model on labelled images."""

    accuracy: float
    precision: list[float]
    recall: list[float]
    confusion: np.ndarray
    misclassified: list[int]
    predicted: np.ndarray

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {"accuracy": self.accuracy, "errors": len(self.misclassified),
                "precision": self.precision, "recall": self.recall,
                "confusion": self.confusion.tolist(), "misclassified": self.misclassified}


def metrics(probabilities: np.ndarray, labels: np.ndarray) -> Metrics:
    """Metrics from (N, 10) probabilities and (N,) true labels."""
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    diagonal = np.diag(confusion).astype(float)
    precision = diagonal / np.maximum(confusion.sum(axis=0), 1)
    recall = diagonal / np.maximum(confusion.sum(axis=1), 1)
    return Metrics(accuracy=float((predicted == labels).mean()),
                   precision=[round(float(p), 6) for p in precision],
                   recall=[round(float(r), 6) for r in recall], confusion=confusion,
                   misclassified=np.flatnonzero(predicted != labels).tolist(),
                   predicted=predicted)


@dataclass
class Evaluation:
    """Ensemble and per-member metrics on the same test images."""

    ensemble: Metrics
    members: dict[str, Metrics]
    images: np.ndarray
    labels: np.ndarray

    def to_json(self) -> dict:
        """`{"ensemble": {...}, "members": {name: {...}}, "n": int}`."""
        return {"ensemble": self.ensemble.to_json(),
                "members": {n: m.to_json() for n, m in self.members.items()},
                "n": int(len(self.labels))}


def evaluate_ensemble(weights: str | os.PathLike | None = None, data_dir: str | None = None,
                      limit: int | None = None) -> Evaluation:
    """Evaluate the models in `weights` (default: bundled) on the MNIST test set."""


    ensemble, _ = load_ensemble(weights)
    images, labels = load_mnist(data_dir).split("test")
    if limit:
        images, labels = images[:limit], labels[:limit]
    member_p = member_probabilities(ensemble, images)
    return Evaluation(ensemble=metrics(member_p.mean(axis=0), labels),
                      members={name: metrics(member_p[k], labels)
                               for k, name in enumerate(ensemble.members)},
                      images=images, labels=labels)


def format_text(result: Evaluation) -> str:
    """Human-readable summary: accuracy table, per-class recall/precision of the ensemble."""
    lines = [f"MNIST test set, {len(result.labels)} images", "",
             f"{'model':<10} {'accuracy':>9} {'errors':>7}"]
    for name, m in [*result.members.items(), ("ensemble", result.ensemble)]:
        lines.append(f"{name:<10} {m.accuracy:>9.4f} {len(m.misclassified):>7}")
    e = result.ensemble
    lines += ["", "ensemble per class: " + "  ".join(f"{d}" .rjust(6) for d in range(10)),
              "  precision        " + "  ".join(f"{p:6.4f}" for p in e.precision),
              "  recall           " + "  ".join(f"{r:6.4f}" for r in e.recall),
              "", f"misclassified test indices: {e.misclassified[:30]}"
              + (" …" if len(e.misclassified) > 30 else "")]
    return "\n".join(lines)


def write_report(result: Evaluation, out: str | os.PathLike) -> list[Path]:
    """Write confusion_matrix.png and misclassified.png (matplotlib) into `out`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    confusion = result.ensemble.confusion
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    shown = np.where(np.eye(10, dtype=bool), 0, confusion)  # colour the errors, not the diagonal
    im = ax.imshow(shown, cmap="Reds")
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="black" if i != j else "tab:green")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title=f"Ensemble confusion matrix (accuracy {result.ensemble.accuracy:.2%})")
    fig.colorbar(im, ax=ax, label="errors")
    fig.tight_layout()
    paths = [out / "confusion_matrix.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    wrong = result.ensemble.misclassified[:60]
    cols = 10
    rows = max(1, (len(wrong) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, wrong, strict=False):
        ax.imshow(result.images[index], cmap="gray_r")
        ax.set_title(f"#{index}\n{result.labels[index]}→{result.ensemble.predicted[index]}",
                     fontsize=7, color="tab:red")
    fig.suptitle(f"Misclassified by the ensemble ({len(result.ensemble.misclassified)}): "
                 "index, true→predicted", fontsize=9)
    fig.tight_layout()
    paths.append(out / "misclassified.png")
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths


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


def member_probabilities(ensemble: Ensemble, images: np.ndarray) -> np.ndarray:
    """(M, N, 10) probabilities of each member over uint8 images, in batches of 1,000."""
    with torch.inference_mode():
        return np.concatenate(
            [ensemble.member_probabilities(to_tensor(images[i:i + 1000])).numpy()
             for i in range(0, len(images), 1000)], axis=1)
