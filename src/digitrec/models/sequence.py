"""The sequence reader: a small CNN + bidirectional GRU read a whole line of digits left to
right, trained with CTC (class 0 is CTC's blank, class d + 1 the digit d), so touching digits
need no cut. Input: `preprocess.line.line_image` pixels (N, 1, 32, W), W a multiple of 4;
output: log-probabilities (N, W / 2, 11), one frame per STRIDE columns.

`greedy_decode` turns the frames into digits with a confidence and a column range each.
Weights live in their own directory (`weights/reader/`, reader.safetensors + reader.json), so
the digit ensemble's loader never mistakes the reader for a member."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from digitrec.errors import ModelError
from digitrec.models.cards import BUNDLED_DIR
from digitrec.preprocess.line import HEIGHT, STRIDE

READER_DIR = BUNDLED_DIR / "reader"
READER_NAME = "reader"
CLASSES = 11  # CTC blank + ten digits


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class LineReader(nn.Module):
    """CNN features per column pair, a BiGRU across the line, a linear layer to 11 classes."""

    arch = "crnn"

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        c = [16 * width, 32 * width, 48 * width, 64 * width]
        self.features = nn.Sequential(
            *_block(1, c[0]), nn.MaxPool2d(2),               # 16 x W/2
            *_block(c[0], c[1]), nn.MaxPool2d((2, 1)),       # 8 x W/2
            *_block(c[1], c[2]), *_block(c[2], c[2]), nn.MaxPool2d((2, 1)),  # 4 x W/2
            *_block(c[2], c[3]), nn.MaxPool2d((2, 1)))       # 2 x W/2
        self.project = nn.Linear(c[3] * HEIGHT // 16, 96)
        self.rnn = nn.GRU(96, 64, batch_first=True, bidirectional=True)
        self.head = nn.Linear(128, CLASSES)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 32, W) floats in [0, 1] → log-probabilities (N, W / STRIDE, 11)."""
        f = self.features(x)                              # N, C, 2, T
        f = f.permute(0, 3, 1, 2).flatten(2)              # N, T, C*2
        f = torch.relu(self.project(f))
        f, _ = self.rnn(f)
        return torch.log_softmax(self.head(f), dim=-1)


@dataclass
class ReadDigit:
    """One digit the reader found: its value, confidence, probabilities over 0-9 (at the frame
    it is read from) and its columns [c0, c1) in the line image."""

    digit: int
    confidence: float
    probabilities: list[float]
    columns: tuple[int, int]


def to_batch(lines: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 line images (32, W_i) → a zero-padded float batch (N, 1, 32, max W) and the
    frame counts (N,) of each line."""
    width = max(p.shape[1] for p in lines)
    batch = np.zeros((len(lines), 1, HEIGHT, width), np.float32)
    for i, p in enumerate(lines):
        batch[i, 0, :, :p.shape[1]] = p / 255.0
    frames = torch.tensor([p.shape[1] // STRIDE for p in lines], dtype=torch.long)
    return torch.from_numpy(batch), frames


def greedy_decode(log_probs: np.ndarray) -> list[ReadDigit]:
    """Best-path CTC decoding of one line's frames (T, 11): each digit is a run of frames whose
    best class is that digit (a blank or another digit ends it); its confidence is the highest
    probability of the digit in the run, its probabilities those of that frame."""
    probs = np.exp(log_probs.astype(np.float64))
    best = probs.argmax(axis=1)
    out: list[ReadDigit] = []
    t = 0
    while t < len(best):
        if best[t] == 0:
            t += 1
            continue
        start, cls = t, best[t]
        while t < len(best) and best[t] == cls:
            t += 1
        peak = start + int(probs[start:t, cls].argmax())
        digits = probs[peak, 1:]
        digits = digits / max(digits.sum(), 1e-12)
        out.append(ReadDigit(digit=int(cls) - 1, confidence=float(probs[peak, cls]),
                             probabilities=[float(v) for v in digits],
                             columns=(start * STRIDE, t * STRIDE)))
    return out


def save_reader(model: LineReader, directory: str | os.PathLike, card: dict) -> Path:
    """Write reader.safetensors and reader.json (its card) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / f"{READER_NAME}.safetensors"))
    params = sum(p.numel() for p in model.parameters())
    card = {"name": READER_NAME, "architecture": model.arch, "width": model.width,
            "parameters": params, **card}
    (directory / f"{READER_NAME}.json").write_text(json.dumps(card, indent=2) + "\n")
    return directory / f"{READER_NAME}.safetensors"


def load_reader(directory: str | os.PathLike | None = None) -> tuple[LineReader, dict] | None:
    """The reader in `directory` (default: the bundled one) in eval mode, with its card; None
    when the directory holds none; ModelError when it holds one that cannot be loaded."""
    directory = Path(directory) if directory else READER_DIR
    path = directory / f"{READER_NAME}.safetensors"
    if not path.exists():
        return None
    try:
        card = json.loads(path.with_suffix(".json").read_text())
        model = LineReader(width=int(card.get("width", 1)))
        model.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load the sequence reader from {directory}: {reason}") from None
    return model.eval(), card
