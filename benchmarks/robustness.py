"""Robustness benchmark: MNIST test digits rendered as real input arrives (digitrec.synth
conditions), read by the seed apps' naive pipeline and by digitrec's Recognizer with the same
ensemble, side by side. Prints a table and writes docs/robustness.md.

    python benchmarks/robustness.py [--limit N] [--models DIR] [--inference int8]
                                    [--out docs/robustness.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from digitrec.data.mnist import load_mnist
from digitrec.data.synth import CONDITIONS, HARD_CONDITIONS
from digitrec.io import load_image
from digitrec.recognizer import Recognizer

WRITERS_END = "<!-- benchmarks/writers.py: end -->"  # that benchmark's section of the doc
REPO = Path(__file__).resolve().parents[1]
GOAL, HARD_GOAL = 0.99, 0.98
BATCH = 500


def data_dir(explicit: str | None) -> str | None:
    """The MNIST directory: the option, $DIGITREC_DATA, or the shared copy beside the repo."""
    shared = REPO.parent / "shared" / "mnist"
    if explicit or os.environ.get("DIGITREC_DATA") or not shared.is_dir():
        return explicit
    return str(shared)


def seed_pipeline(source) -> np.ndarray:
    """What the seed apps did: grey, squash to 28x28, invert when the background is light."""
    image = load_image(source).convert("L").resize((28, 28), Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8)
    return 255 - pixels if pixels.mean() > 127 else pixels


def digitrec_pipeline(recognizer: Recognizer, sources: list) -> np.ndarray:
    """Best guesses via Recognizer.predict_many; -1 where the input is refused."""
    return np.array([p.best_guess if p.ok else -1
                     for p in recognizer.predict_many(sources, workers=1)])


def evaluate(recognizer: Recognizer, images: np.ndarray, labels: np.ndarray,
             condition: str, seed: int) -> tuple[float, float, float]:
    """(seed accuracy, digitrec accuracy, ms per image for digitrec) under one condition."""
    render = CONDITIONS[condition]
    rng = np.random.default_rng(seed)
    seed_right = ours_right = 0
    ours_seconds = 0.0
    for start in tqdm(range(0, len(images), BATCH), desc=condition, leave=False):
        batch, truth = images[start:start + BATCH], labels[start:start + BATCH]
        sources = [render(img, rng) for img in batch]
        naive = recognizer.classify(np.stack([seed_pipeline(s) for s in sources]))
        seed_right += int(sum(p.best_guess == t for p, t in zip(naive, truth, strict=True)))
        began = time.perf_counter()
        ours = digitrec_pipeline(recognizer, sources)
        ours_seconds += time.perf_counter() - began
        ours_right += int((ours == truth).sum())
    n = len(images)
    return seed_right / n, ours_right / n, 1000 * ours_seconds / n


def machine() -> str:
    """A one-line description of where the numbers were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def report(rows: list[tuple[str, float, float, float]], args: argparse.Namespace,
           models: list[str], inference: str, n: int) -> str:
    """The Markdown report: command, date, machine, models and the table."""
    command = "python benchmarks/robustness.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Robustness: MNIST digits as real input arrives",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- models: {', '.join(models)} ({args.models or 'bundled weights'}), run by "
        f"{inference}",
        f"- images: the first {n:,} MNIST test digits per condition "
        "(renderings in `src/digitrec/synth.py`, seeded)",
        "- seed pipeline: grey, resize to 28x28, invert when the mean is light "
        "(what the seed apps did); digitrec: `Recognizer.predict_many` "
        "(`digitrec.preprocess`). Same ensemble for both.",
        f"- goal: digitrec >= {GOAL:.1%} per condition, >= {HARD_GOAL:.1%} for "
        f"{', '.join(sorted(HARD_CONDITIONS))}",
        "",
        "| condition | seed pipeline | digitrec | goal | met | digitrec ms/image |",
        "|---|---:|---:|---:|:---:|---:|",
    ]
    for name, naive, ours, ms in rows:
        goal = HARD_GOAL if name in HARD_CONDITIONS else GOAL
        lines.append(f"| {name} | {naive:.2%} | {ours:.2%} | {goal:.0%} | "
                     f"{'yes' if ours >= goal else '**no**'} | {ms:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every condition, print the table, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N test digits only")
    parser.add_argument("--models", default=None, help="model directory (default: bundled)")
    parser.add_argument("--conditions", nargs="*", default=list(CONDITIONS),
                        choices=list(CONDITIONS), help="subset of conditions")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST directory (default: $DIGITREC_DATA, else ../shared/mnist)")
    parser.add_argument("--out", default=str(REPO / "docs" / "robustness.md"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inference", help="backend: onnx, int8 or torch (default: the "
                        "Recognizer's, fp32 onnxruntime; the web app serves int8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    images, labels = load_mnist(data_dir(args.data_dir)).split("test")
    images, labels = images[:args.limit], labels[:args.limit]
    recognizer = Recognizer.load(args.models, backend=args.inference)
    models = list(recognizer.ensemble.members)
    rows = []
    print(f"{'condition':<22}{'seed':>9}{'digitrec':>10}{'ms/img':>8}")
    for name in tqdm(args.conditions, desc="conditions"):
        naive, ours, ms = evaluate(recognizer, images, labels, name, args.seed)
        rows.append((name, naive, ours, ms))
        tqdm.write(f"{name:<22}{naive:>9.2%}{ours:>10.2%}{ms:>8.2f}")
    text = report(rows, args, models, recognizer.inference, len(images))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text() if out.exists() else ""
    if WRITERS_END in old:  # keep benchmarks/writers.py's section, which comes first
        text = old[:old.index(WRITERS_END) + len(WRITERS_END)] + "\n\n" + text
    out.write_text(text)
    print(f"\nwrote {args.out}")
    missed = [n for n, _, ours, _ in rows
              if ours < (HARD_GOAL if n in HARD_CONDITIONS else GOAL)]
    if missed:
        print(f"below goal: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
