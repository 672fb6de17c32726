"""The sequence reader at inference: an ink map → the digits of the line, each with its
confidence and its columns in the ink map (models.sequence on preprocess.line's input)."""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from digitrec.models.sequence import ReadDigit, greedy_decode, load_reader, to_batch
from digitrec.preprocess.line import LineImage, line_image

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
    """The bundled (or a given) sequence reader, run by torch on the caller's thread."""

    def __init__(self, model: torch.nn.Module, card: dict) -> None:
        self.model = model.eval()
        self.card = card
        # a digit it reads less surely than this is uncertain (chosen on validation lines)
        self.threshold = float(card.get("threshold", DEFAULT_THRESHOLD))

    @classmethod
    def load(cls, directory: str | os.PathLike | None = None) -> SequenceReader | None:
        """The reader in `directory` (default: the bundled one); None when there is none."""
        loaded = load_reader(directory)
        return cls(*loaded) if loaded else None

    @torch.inference_mode()
    def read(self, ink: np.ndarray) -> LineReading:
        """Read the line of digits in an ink map (float (H, W), 1 = ink); NoDigitError when
        it is blank."""
        line = line_image(ink)
        x, frames = to_batch([line.pixels])
        log_probs = self.model(x)[0, :int(frames[0])].numpy()
        return LineReading(digits=greedy_decode(log_probs), line=line)
