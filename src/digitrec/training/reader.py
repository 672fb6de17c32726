"""Training the sequence reader (models.sequence) with CTC on synthetic lines (data.lines)
composed from MNIST's training split; validated on lines from the validation split.

A worker process writes fresh lines while the model trains (never the same line twice),
batched by width so little padding is computed. AdamW and the one-cycle schedule are the
digit models' (training.loop); CTC over variable-length lines is what differs from `loop.fit`.

    digitrec train-reader --out runs/reader --steps 6000"""

from __future__ import annotations

import contextlib
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from digitrec import __version__
from digitrec.data.lines import on_paper, synth_line
from digitrec.data.mnist import file_checksums, load_mnist
from digitrec.errors import InputError
from digitrec.models.sequence import LineReader, greedy_decode, save_reader, to_batch
from digitrec.preprocess import to_ink
from digitrec.preprocess.line import line_image
from digitrec.training.loop import one_cycle
from digitrec.training.styles import FRACTIONS, SETTINGS, restyle

CHUNK = 8  # batches generated together and sorted by width
PAPER = 0.45  # share of lines printed on paper and read back as a scan is


def continental(share: float) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    """A restyler for `synth_line`: redraws a 1, 7 or 0 in continental style (training.styles)
    with probability FRACTIONS[label] x `share`; other digits pass unchanged."""
    def restyle_some(image: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
        if label in FRACTIONS and rng.random() < FRACTIONS[label] * share:
            return restyle(image, label, rng)
        return image
    return restyle_some


def training_line(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  styles: float = 0.0) -> tuple[np.ndarray, str]:
    """A synthetic line as the reader sees it: (line image pixels, its digits); `styles` > 0
    redraws some 1s, 7s, 0s and 9s in continental style; a share of the lines printed on paper and
    read back through `to_ink`, as a scan is."""
    ink, label = synth_line(images, labels, rng, continental(styles) if styles > 0 else None)
    if rng.random() < PAPER:
        with contextlib.suppress(InputError):  # too faint to find: kept as the clean ink
            ink = to_ink(on_paper(ink, rng))
    return line_image(ink).pixels, label


@dataclass(frozen=True)
class ReaderRecipe:
    """How the reader is trained (recorded in its card)."""

    steps: int = 6000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 1
    seed: int = 0
    val_lines: int = 1000
    styles: float = 0.0  # continental 1/7/0/9 redrawn in FRACTIONS x this share of lines' digits


def synthetic_lines(images: np.ndarray, labels: np.ndarray, count: int, seed: int,
                    styles: float = 0.0) -> list[tuple[np.ndarray, str]]:
    """`count` synthetic lines as (line image pixels, digits)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        out.append(training_line(images, labels, rng, styles))
    return out


class _Stream(torch.utils.data.IterableDataset):
    """Endless batches of fresh lines, CHUNK batches at a time sorted by width."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                 styles: float = 0.0):
        super().__init__()
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.styles = styles

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(self.seed)
        while True:
            chunk = []
            for _ in range(CHUNK * self.batch_size):
                chunk.append(training_line(self.images, self.labels, rng, self.styles))
            chunk.sort(key=lambda item: item[0].shape[1])
            batches = [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            for k in rng.permutation(len(batches)):
                yield _collate(batches[k])


def _collate(batch: list[tuple[np.ndarray, str]]):
    """(images, frame counts, concatenated targets, target lengths) for CTC."""
    x, frames = to_batch([p for p, _ in batch])
    targets = torch.tensor([int(c) + 1 for _, label in batch for c in label], dtype=torch.long)
    lengths = torch.tensor([len(label) for _, label in batch], dtype=torch.long)
    return x, frames, targets, lengths


@torch.inference_mode()
def read_lines(model: nn.Module, lines: list[np.ndarray], batch_size: int = 64) -> list[str]:
    """The model's best-path reading of each line image."""
    model.eval()
    order = sorted(range(len(lines)), key=lambda i: lines[i].shape[1])
    out: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x, frames = to_batch([lines[i] for i in idx])
        log_probs = model(x).numpy()
        for i, lp, n in zip(idx, log_probs, frames.tolist(), strict=True):
            out[i] = "".join(str(d.digit) for d in greedy_decode(lp[:n]))
    return [out[i] for i in range(len(lines))]


def exact_match(model: nn.Module, val: list[tuple[np.ndarray, str]]) -> float:
    """Share of lines read exactly."""
    read = read_lines(model, [p for p, _ in val])
    return float(np.mean([r == t for r, (_, t) in zip(read, val, strict=True)]))


def train_reader(out: str | Path, recipe: ReaderRecipe = ReaderRecipe(),
                 data_dir: str | None = None, progress: bool = True,
                 init: str | Path | None = None, eval_every: int = 500) -> dict:
    """Train the reader as `recipe` says and write it to `out` (reader.safetensors + card);
    the card and the returned dict hold the validation exact match along the way."""
    torch.manual_seed(recipe.seed)
    mnist = load_mnist(data_dir)
    train_x, train_y = mnist.split("train")
    val_x, val_y = mnist.split("val")
    val = synthetic_lines(val_x, val_y, recipe.val_lines, seed=10_000 + recipe.seed,
                          styles=recipe.styles)
    model = LineReader(width=recipe.width)
    if init:
        from digitrec.models.sequence import load_reader
        loaded = load_reader(init)
        if loaded:
            model.load_state_dict(loaded[0].state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    schedule = one_cycle(optimizer, recipe.lr, recipe.steps)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    loader = torch.utils.data.DataLoader(
        _Stream(train_x, train_y, recipe.batch_size, recipe.seed, recipe.styles), batch_size=None,
        num_workers=1, prefetch_factor=4, persistent_workers=False)
    history, losses, started = [], [], time.time()
    bar = tqdm(total=recipe.steps, desc="reader", disable=not progress, file=sys.stderr)
    for step, (x, frames, targets, lengths) in enumerate(loader, start=1):
        model.train()
        log_probs = model(x)
        loss = ctc(log_probs.transpose(0, 1), targets, frames, lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % eval_every == 0 or step == recipe.steps:
            acc = exact_match(model, val)
            history.append({"step": step, "loss": float(np.mean(losses[-eval_every:])),
                            "val_exact": acc, "seconds": round(time.time() - started, 1)})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", val=f"{acc:.4f}")
            save_reader(model, out, _card(recipe, history, data_dir, init))
        if step >= recipe.steps:
            break
    bar.close()
    return {"history": history, "val_exact": history[-1]["val_exact"]}


def _card(recipe: ReaderRecipe, history: list[dict], data_dir: str | None,
          init: str | Path | None) -> dict:
    """The reader's model card: recipe, data, history, environment."""
    return {"task": "a line of digits, read left to right (CTC)",
            "command": shlex.join(["digitrec", *sys.argv[1:]]) if sys.argv else None,
            "recipe": asdict(recipe), "init": str(init) if init else None,
            "training_data": "synthetic lines composed from MNIST's training split "
                             "(data.lines.synth_line); validation lines from its validation split",
            **({"styles": {"module": "digitrec.training.styles", "share": recipe.styles,
                           **SETTINGS}} if recipe.styles else {}),
            "mnist_files": file_checksums(data_dir), "history": history,
            "val_exact": history[-1]["val_exact"] if history else None,
            "digitrec": __version__, "torch": torch.__version__,
            "python": platform.python_version()}
