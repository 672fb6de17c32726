"""Whole numbers from real writers: how well `Recognizer.read_number` reads numbers of 2-8 digits.

Numbers are composed from one DigiLeTs writer's own digits (`../shared/digilets/`, pen strokes;
all digits of a number from the same person), the way people write a number: each digit scaled
to a common height (±10%), the baseline wandering (±5% of the height), in three spacing classes
— touching (gaps of −8% to 0% of the height: strokes meet or overlap), normal (10-35%) and wide
(50-90%). They are drawn as the page's number pad draws (560×280, black on white, round pen;
the pen is the page's default, 23 px, or 15% of the digit height when smaller) and as a scan
shows them (bold marker and thin ballpoint on grey paper). The same is done with MNIST's test
digits (images: ink cropped, scaled, pasted with the same spacing). Everything is seeded.

For each condition and spacing class: exact match of the best guess, abstention, exact match
when answered, right length, per-digit accuracy (1 − edit distance / length), ms per number.
The writers are only measured here, never trained on (../shared/digilets/README.md).

    .venv/bin/python benchmarks/read_numbers.py [--per-writer 2] [--out docs/numbers.md]

(Not "numbers.py": run as a script, that name would hide the standard library's `numbers`.)
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from digitrec.data.strokes import DEFAULT_PEN, load_strokes, render_strokes
from digitrec.evaluation.numbers import edit_distance
from digitrec.recognizer import Recognizer

REPO = Path(__file__).resolve().parents[1]
DIGILETS = REPO.parent / "shared" / "digilets" / "digits.jsonl"
PAD = (560, 280)  # the page's number pad (app.js SIZES.number)
GAPS = {"touching": (-0.08, 0.0), "normal": (0.10, 0.35), "wide": (0.50, 0.90)}
LENGTHS = range(2, 9)
SEED = 16


@dataclass
class Reading:
    """One number read: the truth, what was read, whether it was answered, the time."""

    condition: str
    spacing: str
    truth: str
    best_guess: str
    answered: bool
    ms: float
    variant: str = "combined"  # the reader measured: "combined" or "segmenter" (alone)
    source: str = ""  # whose digits: NumberReading.reader


def layout(sizes: list[tuple[float, float]], spacing: str, rng: np.random.Generator
           ) -> list[tuple[float, float, float]]:
    """Where each digit goes: (x, y of its box's top-left, scale) in units of the common digit
    height, for digit boxes of (width, height) in their own units."""
    low, high = GAPS[spacing]
    x, placed = 0.0, []
    for width, height in sizes:
        scale = rng.uniform(0.9, 1.1) / max(height, 1e-6)
        y = rng.uniform(-0.05, 0.05) + (1.0 - height * scale)  # bottoms near a baseline at 1
        placed.append((x, y, scale))
        x += width * scale + rng.uniform(low, high)
    return placed


def fit_to_pad(extent: tuple[float, float, float, float], margin: float = 0.08
               ) -> tuple[float, float, float]:
    """Scale and offset (s, dx, dy) that centre a box (x0, y0, x1, y1) on the pad, its height
    at most 55% of the pad's and its width within the margins."""
    x0, y0, x1, y1 = extent
    width, height = PAD
    s = min(0.55 * height / max(y1 - y0, 1e-6), (1 - 2 * margin) * width / max(x1 - x0, 1e-6))
    return s, (width - s * (x1 - x0)) / 2 - s * x0, (height - s * (y1 - y0)) / 2 - s * y0


def stroke_number(digits: list, spacing: str, style: str, rng: np.random.Generator
                  ) -> Image.Image:
    """A number from stroke digits, drawn on the number pad in `style`."""
    boxes = []
    for digit in digits:
        xs = [p[0] for stroke in digit.strokes for p in stroke]
        ys = [p[1] for stroke in digit.strokes for p in stroke]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    placed = layout([(b[2] - b[0], b[3] - b[1]) for b in boxes], spacing, rng)
    strokes = []
    for digit, box, (x, y, scale) in zip(digits, boxes, placed, strict=True):
        strokes += [[(x + (p[0] - box[0]) * scale, y + (p[1] - box[1]) * scale) for p in s]
                    for s in digit.strokes]
    xs = [p[0] for s in strokes for p in s]
    ys = [p[1] for s in strokes for p in s]
    s, dx, dy = fit_to_pad((min(xs), min(ys), max(xs), max(ys)))
    width, height = PAD
    band = (width - height) / 2  # drawn on a width x width square, the pad a band across it
    square = [[((s * p[0] + dx) / width, (s * p[1] + dy + band) / width) for p in stroke]
              for stroke in strokes]
    digit_height = s * 1.0
    pen = {"canvas": min(DEFAULT_PEN, 0.15 * digit_height), "bold": 0.2 * digit_height,
           "thin": max(2.0, 0.03 * digit_height)}[style]
    image = render_strokes(square, size=width, pen=pen, style=style,
                           seed=int(rng.integers(1 << 30)))
    return image.crop((0, int(band), width, int(band) + height))


def mnist_number(images: list[np.ndarray], spacing: str, rng: np.random.Generator
                 ) -> Image.Image:
    """A number from MNIST digits (light on dark 28x28): ink cropped, placed, black on white."""
    crops = []
    for image in images:
        rows, cols = np.nonzero(image > 30)
        crops.append(image[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    placed = layout([(c.shape[1] / c.shape[0], 1.0) for c in crops], spacing, rng)
    extent = (0.0, min(y for _, y, _ in placed),
              max(x + c.shape[1] / c.shape[0] * sc for (x, _, sc), c in zip(placed, crops,
                                                                            strict=True)),
              max(y + sc for _, y, sc in placed))
    s, dx, dy = fit_to_pad(extent)
    ink = np.zeros(PAD[::-1], np.float32)
    for crop, (x, y, scale) in zip(crops, placed, strict=True):
        h = max(1, round(s * scale))
        w = max(1, round(s * scale * crop.shape[1] / crop.shape[0]))
        tile = np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR), np.float32)
        top, left = round(s * y + dy), round(s * x + dx)
        region = ink[top:top + h, left:left + w]
        np.maximum(region, tile[:region.shape[0], :region.shape[1]] / 255, out=region)
    return Image.fromarray(np.rint(255 * (1 - ink)).astype(np.uint8), "L")


def stroke_cases(per_writer: int, rng: np.random.Generator) -> list[tuple[str, list, str]]:
    """(spacing, digits, truth) for each writer, spacing class and repetition."""
    by_writer: dict[str, list] = {}
    for digit in load_strokes(DIGILETS):
        by_writer.setdefault(digit.writer, []).append(digit)
    cases = []
    for writer in sorted(by_writer):
        digits = by_writer[writer]
        for spacing in GAPS:
            for _ in range(per_writer):
                chosen = [digits[int(k)] for k in rng.integers(len(digits),
                                                               size=int(rng.choice(LENGTHS)))]
                cases.append((spacing, chosen, "".join(str(d.label) for d in chosen)))
    return cases


def read_all(recognizers: dict[str, Recognizer], condition: str, items) -> list[Reading]:
    """Read each (spacing, image, truth) with each variant, and time it."""
    out = []
    for spacing, image, truth in tqdm(items, desc=condition, file=sys.stderr):
        for variant, recognizer in recognizers.items():
            start = time.perf_counter()
            try:
                reading = recognizer.read_number(image)
                guess, answered = reading.best_guess, reading.number is not None
                source = reading.reader
            except Exception as exc:  # a number not found at all counts as read wrong
                guess, answered, source = f"<{type(exc).__name__}>", False, "error"
            out.append(Reading(condition, spacing, truth, guess, answered,
                               (time.perf_counter() - start) * 1e3, variant, source))
    return out


def summary(readings: list[Reading]) -> dict:
    """The numbers of one group of readings."""
    n = len(readings)
    exact = [r.best_guess == r.truth for r in readings]
    answered = [r for r in readings if r.answered]
    return {"n": n, "exact": float(np.mean(exact)),
            "abstained": 1 - len(answered) / n,
            "exact_answered": (float(np.mean([r.best_guess == r.truth for r in answered]))
                               if answered else float("nan")),
            "right_length": float(np.mean([len(r.best_guess) == len(r.truth)
                                           for r in readings])),
            "per_digit": float(np.mean([max(0.0, 1 - edit_distance(r.best_guess, r.truth)
                                            / len(r.truth)) for r in readings])),
            "ms_p50": float(np.median([r.ms for r in readings])),
            "sources": {k: sum(r.source == k for r in readings) / n
                        for k in ("both", "segmenter", "sequence")}}


def regressions(readings: list[Reading]) -> list[str]:
    """The numbers the segmenter alone read right and the combined reader does not, per
    condition: how many, how many of those it answers (wrongly), and the first few."""
    seg = {(r.condition, r.spacing, r.truth, k): r for k, r in
           enumerate(r for r in readings if r.variant == "segmenter")}
    both = {(r.condition, r.spacing, r.truth, k): r for k, r in
            enumerate(r for r in readings if r.variant == "combined")}
    lost = [(seg[key], both[key]) for key in seg
            if key in both and seg[key].best_guess == seg[key].truth
            and both[key].best_guess != both[key].truth]
    out = ["Read right by the segmenter alone, not by the combined reader (condition: numbers, "
           "of them answered wrong):", ""]
    for condition in dict.fromkeys(r.condition for r in readings):
        group = [(s, c) for s, c in lost if s.condition == condition]
        right = sum(r.best_guess == r.truth for r in seg.values() if r.condition == condition)
        out.append(f"- {condition}: {len(group)} of the {right} it read right, "
                   f"{sum(c.answered for _, c in group)} answered wrong"
                   + ("" if not group else ": " + ", ".join(
                       f"{c.truth} → {c.best_guess} ({c.spacing}, {c.source}"
                       f"{', answered' if c.answered else ''})" for _, c in group[:6])))
    return out


def report(readings: list[Reading], args: argparse.Namespace) -> str:
    """The results as markdown."""
    lines = ["# Numbers: whole numbers from real writers", "",
             f"- command: `python benchmarks/read_numbers.py --per-writer {args.per_writer} "
             f"--mnist {args.mnist} --styles {args.styles} --readers {args.readers}`",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end "
             "(other work was running: the times are upper bounds); readers: `combined` is "
             "`Recognizer.read_number` (the segmenter and the sequence reader, as the app "
             "serves), `segmenter` the same without the sequence reader (cut, then the ensemble "
             "on each digit); both on the backend the app serves",
             "- numbers: 2-8 digits; DigiLeTs: 77 writers × 3 spacings × "
             f"{args.per_writer}, all digits of a number from one writer; MNIST: "
             f"{args.mnist_split} digits",
             "- whose digits (combined): both readers agree / the segmenter's / the sequence "
             "reader's (they disagree, and it is the surer; uncertain unless it is sure of "
             "every digit and the segmenter is not sure of as many digits)",
             "", "| condition | spacing | reader | numbers | exact (best guess) | abstains | "
             "exact when answered | right length | per digit | ms p50 | both / seg. / seq. |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    conditions = list(dict.fromkeys(r.condition for r in readings))
    variants = list(dict.fromkeys(r.variant for r in readings))
    for condition in conditions:
        for spacing in [*GAPS, "all"]:
            for variant in variants:
                group = [r for r in readings if r.condition == condition and r.variant == variant
                         and (spacing == "all" or r.spacing == spacing)]
                s = summary(group)
                shares = ("" if variant != "combined" else
                          " / ".join(f"{v:.0%}" for v in s["sources"].values()))
                lines.append(
                    f"| {condition} | {spacing} | {variant} | {s['n']} | {s['exact']:.1%} | "
                    f"{s['abstained']:.1%} | {s['exact_answered']:.1%} | "
                    f"{s['right_length']:.1%} | {s['per_digit']:.1%} | {s['ms_p50']:.0f} | "
                    f"{shares} |")
    if {"combined", "segmenter"} <= set(variants):
        lines += ["", *regressions(readings)]
    wrong = [r for r in readings if r.best_guess != r.truth and r.variant == variants[0]][:15]
    lines += ["", f"Some misreadings ({variants[0]}; condition, spacing: truth → read):", ""]
    lines += [f"- {r.condition}, {r.spacing}: {r.truth} → {r.best_guess}" for r in wrong]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-writer", type=int, default=2,
                        help="numbers per writer and spacing class")
    parser.add_argument("--mnist", type=int, default=231, help="MNIST-test numbers per "
                        "spacing class (0: none; needs $DIGITREC_DATA or ../shared/mnist)")
    parser.add_argument("--styles", default="canvas,bold,thin",
                        help="DigiLeTs renderings (empty: none)")
    parser.add_argument("--mnist-split", choices=("test", "val"), default="test",
                        help="MNIST digits for the MNIST numbers: test (the report) or val (for "
                        "choosing how the readers are combined, never the test digits)")
    parser.add_argument("--readers", default="combined,segmenter",
                        help="combined (what the app serves) and/or segmenter (alone)")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    if args.styles and not DIGILETS.exists():
        sys.exit(f"{DIGILETS} is missing: the DigiLeTs digits sit beside the repository")
    combined = Recognizer.load()
    alone = copy.copy(combined)
    alone.reader = None
    recognizers = {name: {"combined": combined, "segmenter": alone}[name]
                   for name in args.readers.split(",")}
    rng = np.random.default_rng(SEED)
    cases = stroke_cases(args.per_writer, rng) if args.styles else []
    readings = []
    for style in filter(None, args.styles.split(",")):
        style_rng = np.random.default_rng([SEED, len(style)])
        items = [(spacing, stroke_number(digits, spacing, style, style_rng), truth)
                 for spacing, digits, truth in cases]
        readings += read_all(recognizers, f"DigiLeTs {style}", items)
    if args.mnist:
        from digitrec.data.mnist import load_mnist
        images, labels = load_mnist(os.environ.get("DIGITREC_DATA") or
                                    REPO.parent / "shared" / "mnist").split(args.mnist_split)
        items = []
        for spacing in GAPS:
            for _ in range(args.mnist):
                picks = rng.integers(len(images), size=int(rng.choice(LENGTHS)))
                items.append((spacing, mnist_number([images[k] for k in picks], spacing, rng),
                              "".join(str(int(labels[k])) for k in picks)))
        readings += read_all(recognizers, f"MNIST {args.mnist_split}", items)
    text = report(readings, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
