"""Test-set evaluation of every member and of the ensemble: accuracy, per-class precision and
recall, confusion matrix, misclassified indices, and PNG reports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitrec.recognizer import Recognizer


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
    inference: str = "torch"
    risk: dict | None = None

    def to_json(self) -> dict:
        """`{"ensemble": {...}, "members": {name: {...}}, "n", "inference", "risk"}`."""
        return {"ensemble": self.ensemble.to_json(),
                "members": {n: m.to_json() for n, m in self.members.items()},
                "n": int(len(self.labels)), "inference": self.inference, "risk": self.risk}


def risk(member_p: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Risk as users feel it: best-guess accuracy; how often the ensemble abstains (members
    disagree, or confidence under `threshold`) and how often it is right when it answers; and
    the accuracy on the 90% and 95% of images it is surest of."""
    mean = member_p.mean(axis=0)
    guess, confidence = mean.argmax(axis=1), mean.max(axis=1)
    right = guess == labels
    answered = (member_p.argmax(axis=2) == guess).all(axis=0) & (confidence >= threshold)
    order = np.argsort(-confidence, kind="stable")
    at = {f"accuracy_at_{int(c * 100)}_coverage": float(right[order[:max(1, round(c * len(
        labels)))]].mean()) for c in (0.90, 0.95)}
    return {"best_guess_accuracy": float(right.mean()),
            "abstention_rate": float(1 - answered.mean()),
            "accuracy_when_answered": float(right[answered].mean()) if answered.any() else None,
            **at, "threshold": threshold}


def evaluate_recognizer(recognizer: Recognizer, images: np.ndarray,
                        labels: np.ndarray) -> Evaluation:
    """Members and ensemble of a Recognizer (on its backend) on labelled 28x28 images."""
    member_p = recognizer.member_probabilities(images)
    return Evaluation(ensemble=metrics(member_p.mean(axis=0), labels),
                      members={name: metrics(member_p[k], labels)
                               for k, name in enumerate(recognizer.ensemble.members)},
                      images=images, labels=labels, inference=recognizer.inference,
                      risk=risk(member_p, labels, recognizer.threshold))


def format_text(result: Evaluation) -> str:
    """Human-readable summary: accuracy table, per-class recall/precision of the ensemble."""
    lines = [f"MNIST test set, {len(result.labels)} images ({result.inference})", "",
             f"{'model':<10} {'accuracy':>9} {'errors':>7}"]
    for name, m in [*result.members.items(), ("ensemble", result.ensemble)]:
        lines.append(f"{name:<10} {m.accuracy:>9.4f} {len(m.misclassified):>7}")
    e = result.ensemble
    lines += ["", "ensemble per class: " + "  ".join(f"{d}" .rjust(6) for d in range(10)),
              "  precision        " + "  ".join(f"{p:6.4f}" for p in e.precision),
              "  recall           " + "  ".join(f"{r:6.4f}" for r in e.recall),
              "", f"misclassified test indices: {e.misclassified[:30]}"
              + (" …" if len(e.misclassified) > 30 else "")]
    if result.risk:
        r = result.risk
        answered = r["accuracy_when_answered"]
        lines += ["", f"abstains on {r['abstention_rate']:.2%} (threshold {r['threshold']:g} or "
                  f"members disagree); right on {answered:.2%} of the rest" if answered is not None
                  else f"abstains on every image (threshold {r['threshold']:g})",
                  f"accuracy on the 90% it is surest of: {r['accuracy_at_90_coverage']:.2%}, "
                  f"on the 95%: {r['accuracy_at_95_coverage']:.2%}"]
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
