"""Single-image latency in process: `Recognizer.predict` on a 280x280 canvas-style PNG, with the
split between preprocessing (decode + MNIST-style normalisation) and the model (classify), for
onnxruntime fp32, onnxruntime int8 (what the web app and, by default, every caller runs when the
weights carry an int8.json), the torch fast path and the reference eager ensemble, in one run.

    .venv/bin/python benchmarks/latency.py [--weights DIR] [--calls 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _canvas import canvas_png  # noqa: E402

from digitrec.inference import create_backend as optimize  # noqa: E402
from digitrec.inference.int8 import load_int8_ranges  # noqa: E402
from digitrec.inference.onnx_backend import onnx_available  # noqa: E402
from digitrec.models import BUNDLED_DIR  # noqa: E402
from digitrec.preprocess import preprocess  # noqa: E402
from digitrec.recognizer import Recognizer  # noqa: E402


def timings(fn: Callable[[], object], calls: int, warmup: int, label: str) -> np.ndarray:
    """Milliseconds of `calls` calls of fn after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(calls)
    for i in tqdm(range(calls), desc=label, leave=False, file=sys.stderr):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out * 1e3


def main() -> int:
    """Time predict, preprocess and classify; print the percentiles table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="models directory (default: the bundled ensemble)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-onnx", action="store_true", help="skip onnxruntime")
    args = parser.parse_args()
    load_at_start = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    torch.set_num_threads(args.threads)

    recognizer = Recognizer.load(args.weights)
    png = canvas_png()
    image28 = preprocess(png)
    batch = image28[None]
    assert recognizer.predict(png).best_guess == recognizer.classify(batch)[0].best_guess

    default = recognizer.backend
    onnx = onnx_available() and not args.no_onnx
    calibration = load_int8_ranges(args.weights or BUNDLED_DIR, recognizer.ensemble)
    paths = {"onnxruntime": optimize(recognizer.ensemble, "onnx") if onnx else None,
             "onnxruntime int8": optimize(recognizer.ensemble, "int8", calibration)
             if onnx and calibration else None,
             "torch fast path": optimize(recognizer.ensemble, "torch"),
             "reference (eager)": recognizer.ensemble}
    measured = {"preprocess only": timings(lambda: preprocess(png), args.calls, args.warmup,
                                           "preprocess")}
    try:
        for label, module in paths.items():
            if module is None:
                continue
            recognizer.backend = module
            measured[f"predict (preprocess + model), {label}"] = timings(
                lambda: recognizer.predict(png), args.calls, args.warmup, f"predict {label}")
            measured[f"  model only: classify, {label}"] = timings(
                lambda: recognizer.classify(batch), args.calls, args.warmup, f"classify {label}")
    finally:
        recognizer.backend = default

    print(f"\n# single-image latency, 280x280 canvas PNG ({len(png):,} bytes), "
          f"{args.calls} calls after {args.warmup} warm-up, {args.threads} threads, "
          f"Recognizer's default backend: {type(default).__name__}, "
          f"torch {torch.__version__}, load average at start {load_at_start}\n")
    print("| path | p50 ms | p90 ms | p99 ms | mean ms |")
    print("|---|---:|---:|---:|---:|")
    for name, ms in measured.items():
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        print(f"| {name} | {p50:.2f} | {p90:.2f} | {p99:.2f} | {ms.mean():.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
