"""The API everyone calls: `Recognizer.load()`, `.predict(image)`, `.predict_batch(images)`,
`.read_number(image)`. CLI, web app and benchmarks all go through here."""

from __future__ import annotations

import json
import os
import queue
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
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


class MicroBatcher:
    """Runs `classify` for many threads at once: calls that arrive while the model is busy are
    served together as one batch by a single model thread (an idle model starts at once).
    For servers, where batches are several times cheaper per image than single images."""

    def __init__(self, classify: Callable[[np.ndarray], list], max_batch: int = 64):
        self.classify = classify
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._owner = None  # pid whose model thread is running (a fork needs its own)

    def __call__(self, images28: np.ndarray) -> list:
        """`classify(images28)`, possibly batched with other threads' calls."""
        self._start()
        future: Future = Future()
        self._jobs.put((images28, future))
        return future.result()

    def _start(self) -> None:
        with self._lock:
            if self._owner != os.getpid():
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._jobs,), daemon=True,
                                 name="digitrec-batcher").start()
                self._owner = os.getpid()

    def _serve(self, jobs: queue.SimpleQueue) -> None:
        while True:
            batch = [jobs.get()]
            count = len(batch[0][0])
            while count < self.max_batch:
                try:
                    batch.append(jobs.get_nowait())
                except queue.Empty:
                    break
                count += len(batch[-1][0])
            try:
                results = self.classify(np.concatenate([images for images, _ in batch]))
            except Exception as exc:  # each caller gets the error, the thread lives on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for images, future in batch:
                future.set_result(results[start:start + len(images)])
                start += len(images)


class Recognizer:
    """An ensemble of CNNs behind MNIST-style preprocessing."""

    def __init__(self, ensemble: Ensemble, cards: dict[str, dict], threshold: float,
                 batching: bool = False):
        self.ensemble = ensemble.eval()  # the reference path, as trained
        self.cards = cards
        self.threshold = threshold
        self.fast = _fast_path(self.ensemble)  # what classify() runs: same outputs, faster
        # what predict/predict_batch/read_number call: classify, or one shared across threads
        self._run = MicroBatcher(self.classify) if batching else self.classify

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, batching: bool = False) -> Recognizer:
        """Load the models in `path` (the bundled ensemble by default). `batching`: serve
        concurrent calls from several threads as shared batches (for servers)."""
        directory = Path(path) if path else BUNDLED_DIR
        ensemble, cards = load_ensemble(directory)
        calibration = directory / "calibration.json"
        threshold = (json.loads(calibration.read_text())["threshold"]
                     if calibration.exists() else DEFAULT_THRESHOLD)
        return cls(ensemble, cards, threshold, batching)

    @torch.inference_mode()
    def classify(self, images28: np.ndarray) -> list[Prediction]:
        """Run the ensemble on already-normalised uint8 images (N, 28, 28)."""
        if len(images28) == 0:
            return []
        member_p = self.fast.member_probabilities(to_tensor(images28)).numpy()
        mean_p = member_p.mean(axis=0)
        digits = mean_p.argmax(axis=1)
        confidences = mean_p[np.arange(len(mean_p)), digits]
        disagree = (member_p.argmax(axis=2) != digits).any(axis=0)
        unsure = confidences.astype(np.float64) < self.threshold
        names = list(self.ensemble.members)
        per_member = member_p.transpose(1, 0, 2).tolist()  # (N, M, 10) as Python floats
        out = []
        for i, probs in enumerate(mean_p.tolist()):
            reason = ("the models disagree" if disagree[i] else
                      "confidence below the calibrated threshold" if unsure[i] else None)
            out.append(Prediction(digit=int(digits[i]), confidence=probs[digits[i]],
                                  probabilities=probs, models=dict(zip(names, per_member[i],
                                                                       strict=True)),
                                  abstained=bool(disagree[i] or unsure[i]), image28=images28[i],
                                  reason=reason))
        return out

    def predict(self, image: ImageSource) -> Prediction:
        """Read one digit from an image (bytes, PIL image, array or path)."""
        return self._run(preprocess(image)[None])[0]

    def predict_batch(self, images: Sequence[ImageSource]) -> list[Prediction]:
        """Read many single-digit images with one batched forward pass."""
        return self._run(np.stack([preprocess(img) for img in images]))

    def read_number(self, image: ImageSource) -> NumberReading:
        """Split a line of handwritten digits and read each, left to right (the models'
        confidence decides where touching digits are cut)."""
        def score(images28: np.ndarray) -> np.ndarray:
            return np.array([d.confidence for d in self._run(images28)])

        segments = segment_digits(image, score)
        digits = self._run(np.stack([s.image28 for s in segments]))
        number = "".join("?" if d.digit is None else str(d.digit) for d in digits)
        return NumberReading(number=number, digits=digits, boxes=[s.box for s in segments])
