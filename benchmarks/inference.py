"""Batch inference of the ensemble: images/s and achieved GFLOP/s as a fraction of this machine's
fp32 matmul peak, measured in the same run on the same thread count, for the reference Ensemble
(eager PyTorch, as trained) and for `digitrec.inference.create_backend` — ensemble and each
member; for the ensemble also the int8 graph the web app serves (when the weights carry an
int8.json): its
GFLOP/s count the same fp32-equivalent operations, so its "% of peak" is an effective figure.

FLOPs are counted analytically with forward hooks on the reference model: 2 x multiply-adds of
every Conv2d and Linear (bias, BatchNorm, activations and pooling are not counted).

    .venv/bin/python benchmarks/inference.py [--weights DIR] [--threads 2] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from digitrec.data.mnist import DataNotFoundError, load_mnist
from digitrec.inference import create_backend as optimize
from digitrec.inference.int8 import load_int8_ranges
from digitrec.inference.onnx_backend import onnx_available
from digitrec.models import BUNDLED_DIR, Ensemble, load_ensemble, to_tensor


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass over x: 2 x MACs of every Conv2d and Linear, via hooks."""
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * int(np.prod(module.kernel_size))
            total += 2 * output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total


def matmul_peak(sizes: tuple[int, ...] = (2048, 3072, 4096), repeats: int = 5) -> dict:
    """fp32 torch.mm GFLOP/s per size (median of `repeats`); the peak is the best size's median."""
    results = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        results[n] = 2 * n ** 3 / statistics.median(times) / 1e9
    return {"per_size": results, "peak": max(results.values())}


def throughput(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               seconds: float = 3.0, warmup: int = 3) -> float:
    """Images per second of fn over batch x: the median of timed calls for about `seconds`."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        times, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def main() -> int:
    """Measure the peak, then each model's throughput, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="models directory (default: the bundled ensemble)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--no-onnx", action="store_true", help="skip onnxruntime")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    load_at_start = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    torch.set_num_threads(args.threads)
    directory = Path(args.weights) if args.weights else BUNDLED_DIR

    reference, _ = load_ensemble(directory)
    backends = {"optimized (torch)": optimize(reference, "torch")}
    if onnx_available() and not args.no_onnx:
        backends["optimized (onnxruntime)"] = optimize(reference, "onnx")
    try:
        images = load_mnist().test_images[:args.batch]  # real digits, for the agreement check
    except DataNotFoundError:
        images = np.random.default_rng(0).integers(0, 256, (args.batch, 28, 28), np.uint8)
    x = to_tensor(images)
    peak = matmul_peak()

    rows = []
    calibration = load_int8_ranges(directory, reference)
    int8 = ({"optimized (onnxruntime int8)": optimize(reference, "int8", calibration)}
            if "optimized (onnxruntime)" in backends and calibration else {})
    candidates = [("ensemble", reference, {**backends, **int8})] + [
        (name, Ensemble({name: member}), {k: b.subset([name]) for k, b in backends.items()})
        for name, member in reference.members.items()]
    for name, ref_model, fast_models in tqdm(candidates, desc="models", file=sys.stderr):
        flops = count_flops(ref_model, x[:1])
        with torch.inference_mode():
            want = ref_model(x).argmax(1)
        for variant, model in (("reference (eager)", ref_model), *fast_models.items()):
            ips = throughput(model, x, args.seconds)
            gflops = ips * flops / 1e9
            with torch.inference_mode():
                same = torch.equal(model(x).argmax(1), want)
            rows.append({"model": name, "variant": variant, "mflop_per_image": flops / 1e6,
                         "images_per_s": ips, "gflop_per_s": gflops,
                         "fraction_of_peak": gflops / peak["peak"], "same_predictions": same})

    print(f"\n# batch inference, batch {args.batch}, {args.threads} threads, torch "
          f"{torch.__version__}, weights {directory}, load average at start {load_at_start}\n")
    sizes = ", ".join(f"{n}: {g:.1f}" for n, g in peak["per_size"].items())
    print(f"fp32 torch.mm peak: {peak['peak']:.1f} GFLOP/s (median per size, GFLOP/s: {sizes})\n")
    print("| model | variant | MFLOP/image | images/s | GFLOP/s | % of mm peak | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    base = {}
    for row in rows:
        base.setdefault(row["model"], row["images_per_s"])
        speedup = row["images_per_s"] / base[row["model"]]
        print(f"| {row['model']} | {row['variant']} | {row['mflop_per_image']:.2f} | "
              f"{row['images_per_s']:,.0f} | {row['gflop_per_s']:.1f} | "
              f"{row['fraction_of_peak']:.0%} | {speedup:.2f}x |")
    agree = all(r["same_predictions"] for r in rows if "int8" not in r["variant"])
    print(f"\nevery fp32 variant's predictions identical to the reference on these {len(x)} "
          f"images: {agree}")
    for row in (r for r in rows if "int8" in r["variant"]):
        print(f"int8 predictions identical to the reference on these images: "
              f"{row['same_predictions']} (tests/test_quantize.py holds it to 99.9% agreement "
              "on 1,000 test images)")
    if args.json:
        Path(args.json).write_text(json.dumps({"peak": peak, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
