"""End to end, the way a user calls it: `Recognizer.predict_many` over canvas PNGs (decode +
preprocess + model), beside the model alone on the same images and the same call with
preprocessing in this process only (workers=1), in one run; each figure the median of --repeats
runs (alternating, so machine noise hits every variant alike).

    .venv/bin/python benchmarks/end_to_end.py [--images 10000] [--repeats 3] [--inference int8]

The PNGs are MNIST test digits drawn the way the page's canvas sends them
(digitrec.data.synth.canvas_png: 280x280 RGBA, strokes of random width), made once before
timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from digitrec.config import cpu_cores
from digitrec.data.mnist import load_mnist
from digitrec.data.synth import canvas_png
from digitrec.recognizer import Recognizer


def main() -> int:
    """Print the images/s table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inference", help="backend (default: what the web app serves)")
    parser.add_argument("--threads", type=int, default=cpu_cores(), help="torch/onnx threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_at_start = " / ".join(f"{v:.2f}" for v in os.getloadavg())

    mnist = load_mnist()
    digits = mnist.test_images[np.arange(args.images) % len(mnist.test_images)]
    rng = np.random.default_rng(0)
    pngs = [canvas_png(d, rng) for d in tqdm(digits, desc="drawing", file=sys.stderr)]
    recognizer = Recognizer.load(backend=args.inference)
    images28 = np.stack([p.image28 for p in recognizer.predict_many(pngs[:2000])])
    images28 = np.concatenate([images28] * (len(pngs) // len(images28) + 1))[:len(pngs)]

    variants = {
        "model only (classify 28x28, batches of 256)": lambda: [
            recognizer.classify(images28[i:i + 256]) for i in range(0, len(images28), 256)],
        "predict_many, preprocessing in this process (workers=1)":
            lambda: recognizer.predict_many(pngs, workers=1),
        f"predict_many (default: {cpu_cores()} worker processes)":
            lambda: recognizer.predict_many(pngs),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in tqdm(range(args.repeats), desc="repeats", file=sys.stderr):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)

    single = []
    for png in pngs[:300]:
        started = time.perf_counter()
        recognizer.predict(png)
        single.append(time.perf_counter() - started)

    print(f"\n# end to end, {len(pngs):,} canvas PNGs (mean {np.mean([len(p) for p in pngs]):,.0f}"
          f" bytes), {recognizer.inference}, {args.threads} model threads, {cpu_cores()} cores, "
          f"median of {args.repeats} runs, load average at start {load_at_start}\n")
    print("| variant | images/s | ratio to workers=1 |")
    print("|---|---:|---:|")
    base = len(pngs) / statistics.median(seconds[list(variants)[1]])
    for name, runs in seconds.items():
        rate = len(pngs) / statistics.median(runs)
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f} |")
    p50, p99 = np.percentile(np.array(single[50:]) * 1e3, [50, 99])
    print(f"\nsingle image, `predict(png)`, {len(single) - 50} calls after 50 warm-up: "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
