"""The API everyone calls: `Recognizer.load()`, `.predict(image)`, `.predict_batch(images)`,
`.read_number(image)`. CLI, web app and benchmarks all go through here."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from digitrec.models import BUNDLED_DIR, Ensemble, load_ensemble
from digitrec.preprocess import ImageSource, preprocess
from digitrec.segment import segment_digits
from digitrec.train import to_tensor

DEFAULT_THRESHOLD = 0.80  # used when the weights carry no calibration file


@dataclass
class Prediction:
    """What the ensemble read in one image, and what it saw (the 28x28 MNIST-style image)."""

    digit: int | None
    confidence: float
    probabilities: list[float]
    models: dict[str, list[float]]
    abstained: bool
    image28: np.ndarray
    reason: str | None = None

    def to_json(self) -> dict:
        """JSON-ready dict (the 28x28 image as a nested list of 0..255 ints)."""
        return {"digit": self.digit, "confidence": self.confidence,
                "probabilities": self.probabilities, "models": self.models,
                "abstained": self.abstained, "reason": self.reason,
                "image28": self.image28.astype(int).tolist()}


@dataclass
class NumberReading:
    """A line of digits read left to right."""

    number: str
    digits: list[Prediction]
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def abstained(self) -> bool:
        """True when any digit of the number is uncertain."""
        return any(d.abstained for d in self.digits)

    @property
    def confidence(self) -> float:
        """Probability that every digit is right, under independence."""
        return float(np.prod([d.confidence for d in self.digits])) if self.digits else 0.0


def _fast_path(ensemble: Ensemble) -> torch.nn.Module:
    """`digitrec.fast.optimize(ensemble)`, or the ensemble itself if it cannot be optimised."""
    from digitrec.fast import optimize
    try:
        return optimize(ensemble)
    except Exception as exc:  # an unusual member: still correct, just slower
        warnings.warn(f"inference fast path unavailable ({exc}); using the reference ensemble",
                      RuntimeWarning, stacklevel=3)
        return ensemble


class Recognizer:
    """An ensemble of CNNs behind MNIST-style preprocessing."""

    def __init__(self, ensemble: Ensemble, cards: dict[str, dict], threshold: float):
        self.ensemble = ensemble.eval()  # the reference path, as trained
        self.cards = cards
        self.threshold = threshold
        self.fast = _fast_path(self.ensemble)  # what classify() runs: same outputs, faster

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Recognizer:
        """Load the models in `path` (the bundled ensemble by default)."""
        directory = Path(path) if path else BUNDLED_DIR
        ensemble, cards = load_ensemble(directory)
        calibration = directory / "calibration.json"
        threshold = (json.loads(calibration.read_text())["threshold"]
                     if calibration.exists() else DEFAULT_THRESHOLD)
        return cls(ensemble, cards, threshold)

    @torch.inference_mode()
    def classify(self, images28: np.ndarray) -> list[Prediction]:
        """Run the ensemble on already-normalised uint8 images (N, 28, 28)."""
        if len(images28) == 0:
            return []
        member_p = self.fast.member_probabilities(to_tensor(images28)).numpy()
        mean_p = member_p.mean(axis=0)
        names = list(self.ensemble.members)
        out = []
        for i, probs in enumerate(mean_p):
            digit = int(probs.argmax())
            votes = member_p[:, i].argmax(axis=1)
            disagree = bool((votes != digit).any())
            unsure = float(probs[digit]) < self.threshold
            reason = ("the models disagree" if disagree else
                      "confidence below the calibrated threshold" if unsure else None)
            out.append(Prediction(digit=digit, confidence=float(probs[digit]),
                                  probabilities=[float(p) for p in probs],
                                  models={n: [float(p) for p in member_p[m, i]]
                                          for m, n in enumerate(names)},
                                  abstained=disagree or unsure, image28=images28[i],
                                  reason=reason))
        return out

    def predict(self, image: ImageSource) -> Prediction:
        """Read one digit from an image (bytes, PIL image, array or path)."""
        return self.classify(preprocess(image)[None])[0]

    def predict_batch(self, images: Sequence[ImageSource]) -> list[Prediction]:
        """Read many single-digit images with one batched forward pass."""
        return self.classify(np.stack([preprocess(img) for img in images]))

    def read_number(self, image: ImageSource) -> NumberReading:
        """Split a line of handwritten digits and read each, left to right."""
        segments = segment_digits(image)
        digits = self.classify(np.stack([s.image28 for s in segments]))
        number = "".join("?" if d.digit is None else str(d.digit) for d in digits)
        return NumberReading(number=number, digits=digits, boxes=[s.box for s in segments])
