"""The sequence reader at inference: an ink map → the digits of the line, each with its
confidence and its columns in the ink map (models.sequence on preprocess.line's input)."""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from digitrec.errors import ModelError
from digitrec.models.sequence import ReadDigit, greedy_decode, load_reader, to_batch
from digitrec.preprocess.line import HEIGHT, LineImage, line_image

DEFAULT_THRESHOLD = 0.9  # per-digit confidence, when the reader's card names none


@dataclass
class LineReading:
    """What the sequence reader read in a line: the digits, and the line image it looked at."""

    digits: list[ReadDigit]
    line: LineImage

    @property
    def text(self) -> str:
        """The digits as a string."""
        return "".join(str(d.digit) for d in self.digits)

    @property
    def confidence(self) -> float:
        """Probability that every digit is right, under independence."""
        return math.prod(d.confidence for d in self.digits) if self.digits else 0.0

    def ink_regions(self) -> list[tuple[int, int]]:
        """Each digit's columns in the ink map: from halfway to the previous digit to halfway
        to the next (the line's ends for the first and the last)."""
        centres = [(d.columns[0] + d.columns[1]) / 2 for d in self.digits]
        edges = [0.0, *((a + b) / 2 for a, b in itertools.pairwise(centres)),
                 float(self.line.pixels.shape[1])]
        out = []
        for c0, c1 in itertools.pairwise(edges):
            x0, x1 = self.line.to_ink_columns(c0, c1)
            out.append((math.floor(x0), math.ceil(x1)))
        return out


class SequenceReader:
    """The bundled (or a given) sequence reader: onnxruntime runs its exported graph (cached on
    disk like the ensemble's; 4-6x faster than torch on one thread), or torch when asked
    (`engine="torch"`) or when onnxruntime is missing."""

    def __init__(self, model: torch.nn.Module, card: dict, engine: str = "onnx") -> None:
        self.model = model.eval()
        self.card = card
        # a digit it reads less surely than this is uncertain (chosen on validation lines)
        self.threshold = float(card.get("threshold", DEFAULT_THRESHOLD))
        self.engine = engine
        self._session = None  # made on first use, in the process that reads (after a fork)

    @classmethod
    def load(cls, directory: str | os.PathLike | None = None,
             engine: str = "onnx") -> SequenceReader | None:
        """The reader in `directory` (default: the bundled one); None when there is none."""
        loaded = load_reader(directory)
        return cls(*loaded, engine=engine) if loaded else None

    def _log_probs(self, x: torch.Tensor) -> np.ndarray:
        """The model's output for a batch, by onnxruntime when it can."""
        if self.engine == "onnx" and self._session is None:
            self._session = _onnx_session(self.model) or False
        if self._session:
            return self._session.run(None, {"x": x.numpy()})[0]
        with torch.inference_mode():
            return self.model(x).numpy()

    def read(self, ink: np.ndarray) -> LineReading:
        """Read the line of digits in an ink map (float (H, W), 1 = ink); NoDigitError when
        it is blank."""
        line = line_image(ink)
        x, frames = to_batch([line.pixels])
        log_probs = self._log_probs(x)[0, :int(frames[0])]
        return LineReading(digits=greedy_decode(log_probs), line=line)


def _onnx_session(model: torch.nn.Module):
    """An onnxruntime session of the reader's graph (input "x" (N, 1, 32, W), output "y"
    (N, W / 2, 11)), exported once per weights and cached like the ensemble's (a cached graph
    that does not match the model is exported afresh); None without onnxruntime, or when even
    a fresh export does not compute what the model computes (the model then runs in torch)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from digitrec.inference.onnx_backend import cached_session, onnx_cache_dir
    digest = hashlib.sha256(f"torch {torch.__version__}\0".encode())
    digest.update(Path(__file__).read_bytes())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    try:
        path = onnx_cache_dir() / f"reader-{digest.hexdigest()[:24]}.onnx"
    except (OSError, RuntimeError):  # no home directory: no cache
        path = None
    probe = torch.rand((1, 1, HEIGHT, 48), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model.eval()(probe).numpy()

    def export() -> bytes:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (torch.zeros(1, 1, HEIGHT, 64),), buffer,
                              input_names=["x"], output_names=["y"], dynamo=False,
                              dynamic_axes={"x": {0: "n", 3: "w"}, "y": {0: "n", 1: "t"}})
        return buffer.getvalue()

    def matches(session) -> bool:
        got = session.run(None, {"x": probe.numpy()})[0]
        return got.shape == expected.shape and bool(np.allclose(got, expected, atol=1e-3))

    try:
        return cached_session(path, export, matches)[0]
    except ModelError:  # the export itself is wrong: run the model in torch
        return None
