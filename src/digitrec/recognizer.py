"""The API everyone calls: `Recognizer.load()`, `.predict(image)`, `.predict_batch(images)`,
`.read_number(image)`. CLI, web app and benchmarks all go through here."""

from __future__ import annotations

import json
import os
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


def _fast_path(ensemble: Ensemble, backend: str | None,
               calibration: dict | None) -> torch.nn.Module:
    """`digitrec.fast.optimize(ensemble, backend, calibration)`. With no backend asked for,
    falls back to the ensemble itself if it cannot be optimised."""
    from digitrec.fast import optimize, resolve_backend
    if resolve_backend(backend) is not None:
        return optimize(ensemble, backend, calibration)
    try:
        return optimize(ensemble)
    except Exception as exc:  # an unusual member: still correct, just slower
        warnings.warn(f"inference fast path unavailable ({exc}); using the reference ensemble",
                      RuntimeWarning, stacklevel=3)
        return ensemble


@dataclass
class _Lead:
    """Handed to a waiting caller: it now runs the model, for these calls (its own: no future)."""

    jobs: list[tuple[np.ndarray, Future | None]]


class MicroBatcher:
    """Runs `classify` for many threads at once. A call that finds the model idle runs it at
    once in its own thread; calls that arrive while it is busy wait, and the first of them is
    then handed all the waiting calls to run as one batch. For servers, where a batch costs less
    per image than single images, and where handing work to another thread costs time: an
    uncontended call hands nothing over, a waiting one is woken once."""

    def __init__(self, classify: Callable[[np.ndarray], list], max_batch: int = 64):
        self.classify = classify
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._busy = False
        self._waiting: list[tuple[np.ndarray, Future]] = []

    def __call__(self, images28: np.ndarray) -> list:
        """`classify(images28)`, possibly batched with other threads' calls."""
        with self._lock:
            job = (images28, Future()) if self._busy else None
            if job:
                self._waiting.append(job)
            self._busy = True
        if job is None:
            return self._lead([(images28, None)])
        outcome = job[1].result()
        return self._lead(outcome.jobs) if isinstance(outcome, _Lead) else outcome

    def _lead(self, jobs: list[tuple[np.ndarray, Future | None]]) -> list:
        """Run the model for `jobs`, pass the model on, answer every job; returns the result
        of the job without a future (the calling thread's own)."""
        try:
            results, error = self.classify(np.concatenate([images for images, _ in jobs])), None
        except BaseException as exc:  # every caller gets the error, the batcher lives on
            results, error = None, exc
        self._pass_on()
        own, start = None, 0
        for images, future in jobs:
            part = None if error else results[start:start + len(images)]
            start += len(images)
            if future is None:
                own = part
            elif error:
                future.set_exception(error)
            else:
                future.set_result(part)
        if error:
            raise error
        return own

    def _pass_on(self) -> None:
        """Hand the waiting calls (up to max_batch images) to the first of them, or mark the
        model idle."""
        with self._lock:
            if not self._waiting:
                self._busy = False
                return
            sizes = np.cumsum([len(images) for images, _ in self._waiting])
            taken = int(np.searchsorted(sizes, self.max_batch)) + 1  # the call reaching max_batch
            jobs, self._waiting = self._waiting[:taken], self._waiting[taken:]
        (first_images, first), rest = jobs[0], jobs[1:]
        first.set_result(_Lead([(first_images, None), *rest]))


class Recognizer:
    """An ensemble of CNNs behind MNIST-style preprocessing."""

    def __init__(self, ensemble: Ensemble, cards: dict[str, dict], threshold: float,
                 batching: bool = False, backend: str | None = None,
                 calibration: dict | None = None):
        self.ensemble = ensemble.eval()  # the reference path, as trained
        self.cards = cards
        self.threshold = threshold
        # what classify() runs: the same outputs faster (or, for int8, nearly the same)
        self.fast = _fast_path(self.ensemble, backend, calibration)
        # what predict/predict_batch/read_number call: classify, or one shared across threads
        self._run = MicroBatcher(self.classify) if batching else self.classify

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, batching: bool = False,
             backend: str | None = None) -> Recognizer:
        """Load the models in `path` (the bundled ensemble by default). `batching`: serve
        concurrent calls from several threads as shared batches (for servers). `backend`:
        see digitrec.fast.optimize; "int8" reads the int8.json beside the weights."""
        from digitrec.fast import resolve_backend
        from digitrec.quantize import INT8_FILE, QuantizationError, load_calibration

        directory = Path(path) if path else BUNDLED_DIR
        ensemble, cards = load_ensemble(directory)
        calibration_file = directory / "calibration.json"
        threshold = (json.loads(calibration_file.read_text())["threshold"]
                     if calibration_file.exists() else DEFAULT_THRESHOLD)
        int8 = None
        if resolve_backend(backend) == "int8":
            int8 = load_calibration(directory, ensemble)
            if int8 is None:
                raise QuantizationError(f"no {INT8_FILE} in {directory}: run `digitrec "
                                        "quantize` to calibrate these weights for int8")
        return cls(ensemble, cards, threshold, batching, backend, int8)

    @property
    def inference(self) -> str:
        """What classify() runs, in words: "onnxruntime int8", "onnxruntime fp32", "torch"."""
        precision = getattr(self.fast, "precision", None)
        return f"onnxruntime {precision}" if precision else "torch"

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
