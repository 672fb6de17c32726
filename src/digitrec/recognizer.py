"""The one path everyone calls: `Recognizer.load()`, `.predict(image)`, `.predict_many(images)`,
`.read_number(image)`. The CLI, the web app, evaluation, the comparison and the benchmarks all
go through here, on the backend the app serves unless told otherwise.

Bytes → decode + preprocess (digitrec.io, digitrec.preprocess) → 28x28 → backend
(digitrec.inference) → `Prediction`."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from digitrec.errors import DigitrecError, InputError, ModelError
from digitrec.inference import Backend, check_backend, create_backend
from digitrec.inference.batching import MicroBatcher
from digitrec.inference.int8 import INT8_FILE, load_int8_ranges
from digitrec.inference.reader import LineReading, SequenceReader
from digitrec.io import ImageSource
from digitrec.models import BUNDLED_DIR, Ensemble, load_ensemble, to_tensor, weights_digest
from digitrec.preprocess import preprocess
from digitrec.preprocess.ink import ink_and_scale
from digitrec.preprocess.segment import region_segment, segment_ink

DEFAULT_THRESHOLD = 0.80  # used when the weights carry no calibration.json
THRESHOLD_FILE = "calibration.json"  # the abstention threshold, beside the weights
# When the readers disagree, the surer reading is the best guess; the sequence reader's digits are
# the answer only if every digit is at least this sure and the segmenter is not sure of as many
# digits; else the number is uncertain (chosen on MNIST validation numbers: scripts/number_rule.py)
SEQUENCE_ANSWERS = 0.99


@dataclass
class Prediction:
    """What the ensemble read in one image, and what it saw (the 28x28 MNIST-style image).

    `digit` is None when the ensemble abstains (`reason` says why); `best_guess` is always what
    it would have read."""

    digit: int | None
    best_guess: int
    confidence: float
    probabilities: list[float]
    models: dict[str, list[float]]
    abstained: bool
    image28: np.ndarray = field(repr=False)
    reason: str | None = None

    ok = True

    def to_json(self) -> dict:
        """JSON-ready dict (the 28x28 image as a nested list of 0..255 ints)."""
        return {"digit": self.digit, "best_guess": self.best_guess,
                "confidence": self.confidence, "probabilities": self.probabilities,
                "models": self.models, "abstained": self.abstained, "reason": self.reason,
                "image28": self.image28.astype(int).tolist()}


@dataclass
class PredictionError:
    """In `predict_many`'s answer, in place of the Prediction of an input that could not be
    read: the error (a DigitrecError, whose message is meant for the user)."""

    error: DigitrecError

    ok = False

    @property
    def message(self) -> str:
        """What went wrong, in the user's words."""
        return str(self.error) or type(self.error).__name__

    def to_json(self) -> dict:
        """`{"error": message}`."""
        return {"error": self.message}


@dataclass
class NumberReading:
    """A line of digits read left to right. `number` is None when any digit is uncertain;
    `best_guess` is always the digits as read."""

    digits: list[Prediction]
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    # which reader's digits these are: "segmenter" (cut, then the ensemble on each digit),
    # "both" (the sequence reader read the same), "sequence" (the sequence reader's, when the
    # two disagree and it is the surer)
    reader: str = "segmenter"
    doubt: str | None = None  # why the number as a whole is uncertain (the readers disagree)

    @property
    def best_guess(self) -> str:
        """The digits' best guesses, left to right."""
        return "".join(str(d.best_guess) for d in self.digits)

    @property
    def abstained(self) -> bool:
        """True when any digit of the number is uncertain, or the readers disagree."""
        return self.doubt is not None or any(d.abstained for d in self.digits)

    @property
    def number(self) -> str | None:
        """The number read, or None when the reading abstains (see `reason`)."""
        return None if self.abstained else self.best_guess

    @property
    def reason(self) -> str | None:
        """Why the reading abstains: which digits are uncertain, and why."""
        unsure = [f"digit {k + 1}: {d.reason}" for k, d in enumerate(self.digits) if d.abstained]
        return "; ".join(([self.doubt] if self.doubt else []) + unsure) or None

    @property
    def confidence(self) -> float:
        """Probability that every digit is right, under independence."""
        return float(np.prod([d.confidence for d in self.digits])) if self.digits else 0.0


def preprocess_or_error(source: ImageSource) -> np.ndarray | DigitrecError:
    """`preprocess(source)`, or the error that explains why it cannot be read: an InputError
    as raised, anything unexpected wrapped in one (so that one bad image fails alone)."""
    try:
        return preprocess(source)
    except DigitrecError as exc:
        return exc
    except Exception as exc:  # a decoder or numpy failure on hostile input
        return InputError(f"the image could not be read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})")


@dataclass
class _Chunk:
    """A chunk of inputs preprocessed: the 28x28 images of the good ones, stacked, and the
    errors of the others by position (small to send back from a worker process)."""

    size: int
    images28: np.ndarray
    errors: dict[int, DigitrecError]


def _preprocess_chunk(sources: Sequence[ImageSource]) -> _Chunk:
    """preprocess_or_error over a chunk (what each worker process runs)."""
    from digitrec.preprocess.parallel import one_blas_thread

    images28, errors = [], {}
    with one_blas_thread():  # its idle threads would spin (digitrec.preprocess.parallel)
        for k, source in enumerate(sources):
            result = preprocess_or_error(source)
            if isinstance(result, DigitrecError):
                errors[k] = result
            else:
                images28.append(result)
    stacked = np.stack(images28) if images28 else np.empty((0, 28, 28), np.uint8)
    return _Chunk(len(sources), stacked, errors)


def default_backend(weights: str | os.PathLike | None) -> str | None:
    """What the web app serves, and so what every caller runs unless told otherwise: $DIGITREC_
    INFERENCE when set, else "int8" when the weights carry int8 ranges, else "onnx" (which
    falls back to "torch" when onnxruntime is missing; None)."""
    from digitrec.config import read
    chosen = read().inference
    if chosen:
        return chosen
    return "int8" if (weights_directory(weights) / INT8_FILE).exists() else None


def weights_directory(path: str | os.PathLike | None = None) -> Path:
    """`path`, else $DIGITREC_WEIGHTS, else the bundled ensemble: the weights every entry point
    loads unless told otherwise."""
    from digitrec.config import read
    return Path(path) if path else (read().weights or BUNDLED_DIR)


class Recognizer:
    """An ensemble of CNNs behind MNIST-style preprocessing."""

    def __init__(self, ensemble: Ensemble, cards: dict[str, dict], threshold: float,
                 backend: Backend | None = None, batching: bool = False,
                 reader: SequenceReader | None = None):
        self.ensemble = ensemble.eval()  # the reference, as trained
        self.reader = reader  # the sequence reader of whole numbers (read_number), if any
        self.quick = True  # read_number may skip the segmenter when the two readers agree
        self.cards = cards
        self.threshold = threshold
        self.backend = backend if backend is not None else create_backend(self.ensemble)
        self._single: Backend | None = None  # the backend on one thread, for predict_many
        # what predict, predict_many and read_number call: classify, or one shared by threads
        self._run = MicroBatcher(self.classify) if batching else self.classify

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, backend: str | None = None,
             batching: bool = False) -> Recognizer:
        """Load the models in `path` (default: $DIGITREC_WEIGHTS, else the bundled ensemble, as
        the CLI and the web app choose). `backend`: "onnx",
        "int8" or "torch" (digitrec.inference), default: `default_backend(path)`. `batching`:
        serve concurrent calls from several threads as shared batches (for servers)."""
        directory, ensemble, cards, name, ranges = _load_parts(path, backend)
        engine = "torch" if name == "torch" else "onnx"
        reader = (SequenceReader.load(directory / "reader", engine)
                  or SequenceReader.load(engine=engine))
        return cls(ensemble, cards, read_threshold(directory),
                   create_backend(ensemble, name, ranges), batching, reader)

    @staticmethod
    def check(path: str | os.PathLike | None = None, backend: str | None = None) -> str:
        """What `load` would check, without building the backend (cheap, no threads: a server
        calls it once before forking its workers): ModelError or ConfigError when the weights,
        their threshold or their int8 ranges cannot be used; the backend's name otherwise."""
        directory, _, _, name, _ = _load_parts(path, backend)
        read_threshold(directory)
        SequenceReader.load(directory / "reader")
        return name or "onnx"

    @functools.cached_property
    def version(self) -> str:
        """The model version: the SHA-256 of the weights (digitrec.models.weights_digest)."""
        return weights_digest(self.ensemble)

    @property
    def inference(self) -> str:
        """What classify() runs, in words: "onnxruntime int8", "onnxruntime fp32", "torch"."""
        precision = getattr(self.backend, "precision", None)
        return f"onnxruntime {precision}" if precision else "torch"

    @torch.inference_mode()
    def member_probabilities(self, images28: np.ndarray, batch_size: int = 1000,
                             backend: Backend | None = None) -> np.ndarray:
        """Per-member probabilities (M, N, 10) of already-normalised uint8 images (N, 28, 28)."""
        backend = backend or self.backend
        return np.concatenate(
            [backend.member_probabilities(to_tensor(images28[i:i + batch_size])).numpy()
             for i in range(0, len(images28), batch_size)], axis=1)

    def classify(self, images28: np.ndarray, backend: Backend | None = None) -> list[Prediction]:
        """Run the ensemble (on `backend`, default its own) on already-normalised uint8
        images (N, 28, 28)."""
        if len(images28) == 0:
            return []
        member_p = self.member_probabilities(images28, backend=backend)
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
            guess = int(digits[i])
            out.append(Prediction(digit=None if reason else guess, best_guess=guess,
                                  confidence=probs[guess], probabilities=probs,
                                  models=dict(zip(names, per_member[i], strict=True)),
                                  abstained=reason is not None, image28=images28[i],
                                  reason=reason))
        return out

    def predict(self, image: ImageSource) -> Prediction:
        """Read one digit from an image (bytes, PIL image, array or path); InputError when it
        cannot be read."""
        result = preprocess_or_error(image)
        if isinstance(result, DigitrecError):
            raise result
        return self._run(result[None])[0]

    def predict_many(self, images: Iterable[ImageSource], batch_size: int = 128,
                     workers: int | None = None,
                     progress: bool = False) -> list[Prediction | PredictionError]:
        """Read one digit from each image: one result per input, in order, a PredictionError
        in place of each image that cannot be read. Decoding and preprocessing run in
        `workers` processes (default: one per core when there are many images), the models in
        batches of `batch_size`; `progress` shows a progress bar."""
        return list(self.predict_iter(images, batch_size, workers, progress))

    def predict_iter(self, images: Iterable[ImageSource], batch_size: int = 128,
                     workers: int | None = None,
                     progress: bool = False) -> Iterator[Prediction | PredictionError]:
        """predict_many's results as they are ready (a batch at a time), in order."""
        from tqdm import tqdm

        from digitrec.preprocess.parallel import worker_count

        images = list(images)
        workers = worker_count(workers, len(images))
        # beside worker processes, the model runs on one thread (its idle threads would spin)
        classify = self._run if workers <= 1 else functools.partial(
            self.classify, backend=self._one_thread_backend())
        with tqdm(total=len(images), desc="reading", unit="img", disable=not progress,
                  file=sys.stderr) as bar:
            for chunk in self._preprocessed(images, batch_size, workers):
                answers = iter(classify(chunk.images28))
                yield from (PredictionError(chunk.errors[k]) if k in chunk.errors
                            else next(answers) for k in range(chunk.size))
                bar.update(chunk.size)

    def _one_thread_backend(self) -> Backend:
        """The backend on one thread (made once, when the backend can be)."""
        if self._single is None:
            with_threads = getattr(self.backend, "with_threads", None)
            self._single = with_threads(1) if with_threads else self.backend
        return self._single

    @staticmethod
    def _preprocessed(images: list[ImageSource], batch_size: int,
                      workers: int) -> Iterator[_Chunk]:
        """Chunks of preprocessed images (or their errors), in order, in `workers` worker
        processes when more than one."""
        from digitrec.preprocess.parallel import parallel_map
        chunks = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        if workers <= 1:
            yield from map(_preprocess_chunk, chunks)
        else:
            yield from parallel_map(_preprocess_chunk, chunks, workers)

    def read_number(self, image: ImageSource) -> NumberReading:
        """Read a line of handwritten digits, left to right, with two readers: the segmenter
        (cut the line, then the ensemble on each digit; the models' confidence decides where
        touching digits are cut) and the sequence reader (the whole line at once, no cuts),
        when one is loaded. When they agree, that is the number; when they disagree, the surer
        reading is the best guess and the number is uncertain, unless that is the sequence
        reader's, it is sure of every digit (SEQUENCE_ANSWERS) and the segmenter is not sure of
        as many digits. A line of one digit is read as `predict` reads it."""
        ink, scale = ink_and_scale(image)
        if self.reader is None:
            return self._segmented(image, ink, scale)
        sequence = self.reader.read(ink)
        agreed = self._agreed(sequence, ink, scale) if self.quick else None
        if agreed is not None:
            return agreed
        return self._combined(self._segmented(image, ink, scale), sequence, ink, scale)

    def _agreed(self, sequence: LineReading, ink: np.ndarray, scale: tuple[float, float]
                ) -> NumberReading | None:
        """The quick way, when it suffices: the sequence reader is sure of every digit of a
        number of two or more, and the ensemble, reading each digit's stretch of the line,
        is sure of the same digits. None otherwise (the segmenter then reads the line)."""
        if len(sequence.digits) < 2 or min(d.confidence for d in sequence.digits) < \
                self.reader.threshold:
            return None
        segments = [region_segment(ink, x0, x1, scale) for x0, x1 in sequence.ink_regions()]
        if any(s is None for s in segments):
            return None
        predictions = self._run(np.stack([s.image28 for s in segments]))
        if any(p.abstained or p.best_guess != d.digit
               for p, d in zip(predictions, sequence.digits, strict=True)):
            return None
        return NumberReading(digits=predictions, boxes=[s.box for s in segments], reader="both")

    def _segmented(self, image: ImageSource, ink: np.ndarray,
                   scale: tuple[float, float]) -> NumberReading:
        """The segmenter's reading: cut the line, read each digit with the ensemble."""
        # the segmenter scores every candidate digit in one batch: the digits it chooses are
        # among them, so their readings are kept (by image) rather than run a second time
        readings: dict[bytes, Prediction] = {}

        def score(images28: np.ndarray) -> np.ndarray:
            predictions = self._run(images28)
            for image, p in zip(images28, predictions, strict=True):
                readings.setdefault(image.tobytes(), p)
            return np.array([p.confidence for p in predictions])

        segments = segment_ink(ink, scale, score)
        if len(segments) == 1:  # one digit: read as predict() reads it, so the modes agree
            whole = preprocess_or_error(image)
            if not isinstance(whole, DigitrecError):
                segments = [replace(segments[0], image28=whole)]
        keys = [s.image28.tobytes() for s in segments]
        unread = [s.image28 for s, key in zip(segments, keys, strict=True) if key not in readings]
        if unread:  # a lone digit, or a line the segmenter did not need to score
            batch = np.stack(unread)
            for image, p in zip(batch, self._run(batch), strict=True):
                readings.setdefault(image.tobytes(), p)
        return NumberReading(digits=[readings[key] for key in keys],
                             boxes=[s.box for s in segments])

    def _combined(self, segmented: NumberReading, sequence: LineReading, ink: np.ndarray,
                  scale: tuple[float, float]) -> NumberReading:
        """One answer from the two readings (see read_number)."""
        if sequence.text == segmented.best_guess:
            return replace(segmented, reader="both")
        if not sequence.digits or len(segmented.digits) == len(sequence.digits) == 1:
            return segmented  # one digit: the ensemble reads it, as in digit mode
        doubt = (f"the readers disagree: the segmenter read {segmented.best_guess}, the "
                 f"sequence reader {sequence.text}")
        if sequence.confidence <= segmented.confidence:
            return replace(segmented, doubt=doubt)
        digits, boxes = self._sequence_digits(sequence, ink, scale)
        sure = min(d.confidence for d in sequence.digits) >= SEQUENCE_ANSWERS
        sure_cut = not segmented.abstained and len(segmented.digits) == len(sequence.digits)
        return NumberReading(digits=digits, boxes=boxes, reader="sequence",
                             doubt=None if sure and not sure_cut else doubt)

    def _sequence_digits(self, sequence: LineReading, ink: np.ndarray, scale: tuple[float, float]
                         ) -> tuple[list[Prediction], list[tuple[int, int, int, int]]]:
        """The sequence reader's digits as Predictions (what it saw: each digit's stretch of the
        line, normalised), with their boxes in input pixels."""
        threshold = self.reader.threshold
        digits, boxes = [], []
        for read, (x0, x1) in zip(sequence.digits, sequence.ink_regions(), strict=True):
            segment = region_segment(ink, x0, x1, scale)
            sy, sx = scale
            box = segment.box if segment else (int(x0 * sx), int(sequence.line.y0 * sy),
                                               int(x1 * sx), int(sequence.line.y1 * sy))
            unsure = read.confidence < threshold
            digits.append(Prediction(
                digit=None if unsure else read.digit, best_guess=read.digit,
                confidence=read.confidence, probabilities=read.probabilities,
                models={"sequence": read.probabilities}, abstained=unsure,
                image28=segment.image28 if segment else np.zeros((28, 28), np.uint8),
                reason="confidence below the sequence reader's threshold" if unsure else None))
            boxes.append(box)
        return digits, boxes


def _load_parts(path: str | os.PathLike | None, backend: str | None
                ) -> tuple[Path, Ensemble, dict[str, dict], str | None, dict | None]:
    """The weights directory, the ensemble and cards in it, the backend's name and (for int8)
    its ranges; ModelError or ConfigError when they cannot be used."""
    directory = weights_directory(path)
    if not directory.is_dir():
        raise ModelError(f"no weights directory {directory}")
    ensemble, cards = load_ensemble(directory)
    name = check_backend(backend) or default_backend(directory)
    ranges = load_int8_ranges(directory, ensemble) if name == "int8" else None
    if name == "int8" and ranges is None:
        raise ModelError(f"no {INT8_FILE} in {directory}: run `digitrec quantize` to record "
                         "int8 ranges for these weights")
    return directory, ensemble, cards, name, ranges


def read_threshold(directory: Path) -> float:
    """The abstention threshold in the weights' calibration.json, else DEFAULT_THRESHOLD."""
    path = directory / THRESHOLD_FILE
    if not path.exists():
        return DEFAULT_THRESHOLD
    try:
        threshold = float(json.loads(path.read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} holds no usable abstention threshold ({exc})") from None
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"{path}: the abstention threshold must lie in [0, 1], got {threshold}")
    return threshold

