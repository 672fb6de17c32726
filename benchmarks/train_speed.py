"""Time to 99.0% MNIST test accuracy: PyTorch's MNIST example recipe vs `digitrec train --fast`,
measured side by side in one run on the same thread count.

The baseline re-implements pytorch/examples mnist/main.py: conv32 → conv64 (3x3, unpadded) →
max-pool → dropout 0.25 → fc128 → dropout 0.5 → fc10, Adadelta lr 1.0, StepLR γ 0.7, batch 64,
test batch 1000, test-set evaluation after each epoch. It gets the same in-memory data as the fast
recipe (normalised float tensors, shuffled each epoch) so that the ratio measures recipe and model,
not the data loader. Both clocks start after MNIST is in memory and stop at the end of the first
test evaluation that reaches the target (evaluation time included).

    .venv/bin/python benchmarks/train_speed.py [--threads 2] [--repeats 3] [--baseline-epochs 3]

`--per-step-against OLD_SRC` instead times the fast recipe's optimizer steps with this tree's
`src` and with another checkout's (e.g. `git archive HEAD src | tar -x -C /tmp/base`, then
`--per-step-against /tmp/base/src`), in alternating fresh processes, and prints the ratio: the
check that the single-process loop did not get slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from digitrec.data.mnist import load_mnist
from digitrec.models import MEAN, STD
from digitrec.training.loop import train
from digitrec.training.recipes import FAST

TARGET = 0.99
REPO = Path(__file__).resolve().parents[1]


class ExampleNet(nn.Module):
    """The network of pytorch/examples mnist/main.py, unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, 10)."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def _normalised(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) → float (N, 1, 28, 28), as ToTensor() + Normalize((0.1307,), (0.3081,))."""
    return (torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD


@torch.inference_mode()
def _test_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return correct / len(x)


def run_baseline(max_epochs: int, seed: int = 1) -> dict:
    """Train the example recipe until the test accuracy reaches TARGET or `max_epochs` pass."""
    torch.manual_seed(seed)
    mnist = load_mnist()
    train_x, train_y = mnist.split("full")
    test_x, test_y = mnist.split("test")
    x, y = _normalised(train_x), torch.from_numpy(train_y.astype(np.int64))
    tx, ty = _normalised(test_x), torch.from_numpy(test_y.astype(np.int64))
    model = ExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    history, started = [], time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.randperm(len(x))
        for start in tqdm(range(0, len(x), 64), desc=f"baseline epoch {epoch}", leave=False,
                          file=sys.stderr):
            idx = order[start:start + 64]
            optimizer.zero_grad()
            loss = F.nll_loss(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
        acc = _test_accuracy(model, tx, ty)
        history.append({"epoch": epoch, "test_accuracy": acc,
                        "seconds": time.perf_counter() - started})
        print(f"baseline epoch {epoch}: test {acc:.4f} at {history[-1]['seconds']:.1f}s",
              file=sys.stderr)
        if acc >= TARGET:
            break
    reached = history[-1]["test_accuracy"] >= TARGET
    return {"seconds": history[-1]["seconds"], "accuracy": history[-1]["test_accuracy"],
            "reached": reached, "epochs": len(history), "history": history}


def run_fast(seed: int) -> dict:
    """One run of the FAST recipe (what `digitrec train --fast` trains), timed in process."""
    result = train(FAST.replace(seed=seed), full=True, progress=False, evaluate_test=True)
    card = result.card
    return {"seconds": card["time_to_test_accuracy_seconds"], "accuracy": card["test_accuracy"],
            "reached": card["test_accuracy"] >= TARGET, "train_seconds": card["training_seconds"]}


def run_cli(threads: int) -> dict:
    """`digitrec train --fast` as a user runs it: process start, import, data, train, save."""
    with tempfile.TemporaryDirectory() as out:
        command = [str(REPO / ".venv/bin/digitrec"), "train", "--fast", "--full",
                   "--threads", str(threads), "--out", out]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        card = json.loads((Path(out) / "fastnet.json").read_text())
    return {"seconds": seconds, "accuracy": card["test_accuracy"],
            "command": shlex.join(["digitrec", *command[1:-2], "--out", "OUT"])}


PER_STEP = """
import json, sys, torch, digitrec
from digitrec.training.loop import train
from digitrec.training.recipes import FAST
torch.set_num_threads(int(sys.argv[1]))
result = train(FAST.replace(epochs=float(sys.argv[2])), progress=False, evaluate_test=False)
last = result.card["history"][-1]
print(json.dumps({"file": digitrec.__file__, "seconds": last["seconds"], "steps": last["steps"]}))
"""


def per_step(src: Path, threads: int, epochs: float) -> dict:
    """The fast recipe's seconds per optimizer step, trained in a fresh process on `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", PER_STEP, str(threads), str(epochs)], env=env,
                          check=True, capture_output=True, text=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(found["file"]).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"{src}: the run imported digitrec from {found['file']}")
    return {**found, "ms_per_step": 1000 * found["seconds"] / found["steps"]}


def compare_per_step(old_src: Path, threads: int, repeats: int, epochs: float) -> dict:
    """Old vs this tree's per-step time, alternating (old first, then new first) each round."""
    runs: dict[str, list[float]] = {"old": [], "new": []}
    sources = {"old": old_src, "new": REPO / "src"}
    for i in range(repeats):
        for label in ("old", "new") if i % 2 == 0 else ("new", "old"):
            runs[label].append(per_step(sources[label], threads, epochs)["ms_per_step"])
            print(f"round {i + 1} {label}: {runs[label][-1]:.2f} ms/step", file=sys.stderr)
    old, new = (statistics.median(runs[k]) for k in ("old", "new"))
    print(f"\n# fast recipe, ms per optimizer step ({threads} threads, {epochs} epochs, "
          f"median of {repeats} alternating runs)\n")
    print("| tree | median ms/step | runs |")
    print("|---|---:|---|")
    for label in ("old", "new"):
        print(f"| {label} ({sources[label]}) | {statistics.median(runs[label]):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in runs[label])} |")
    print(f"\nnew / old: {new / old:.3f}")
    return {"old": runs["old"], "new": runs["new"], "ratio": new / old}


def main() -> int:
    """Run both recipes and print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fast recipe")
    parser.add_argument("--baseline-epochs", type=int, default=3, help="cap for the baseline")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--per-step-against", type=Path, metavar="OLD_SRC",
                        help="only compare the fast recipe's ms per step with this src tree")
    parser.add_argument("--epochs", type=float, default=0.5, help="with --per-step-against")
    args = parser.parse_args()
    if args.per_step_against:
        found = compare_per_step(args.per_step_against, args.threads, args.repeats, args.epochs)
        if args.json:
            Path(args.json).write_text(json.dumps(found, indent=2))
        return 0
    load_at_start = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    torch.set_num_threads(args.threads)
    load_mnist()  # fail early (and warm the page cache) when MNIST is absent

    fast = [run_fast(seed) for seed in tqdm(range(args.repeats), desc="fast runs",
                                            file=sys.stderr)]
    cli = run_cli(args.threads)
    base = run_baseline(args.baseline_epochs)

    fast_median = statistics.median(r["seconds"] for r in fast)
    print(f"\n# time to {TARGET:.1%} MNIST test accuracy  ({platform.processor() or 'cpu'}, "
          f"{args.threads} threads, torch {torch.__version__}, load average at start "
          f"{load_at_start})\n")
    print("| recipe | wall s to target | test accuracy | reached |")
    print("|---|---:|---:|---|")
    label = f"PyTorch example (Adadelta, batch 64), {base['epochs']} epochs"
    print(f"| {label} | {base['seconds']:.1f} | {base['accuracy']:.4f} | {base['reached']} |")
    for i, r in enumerate(fast):
        print(f"| train --fast, seed {i} | {r['seconds']:.1f} | {r['accuracy']:.4f} "
              f"| {r['reached']} |")
    print(f"| train --fast, median of {len(fast)} | {fast_median:.1f} | "
          f"{statistics.median(r['accuracy'] for r in fast):.4f} | "
          f"{sum(r['reached'] for r in fast)}/{len(fast)} |")
    print(f"| `{cli['command']}` (whole process) | {cli['seconds']:.1f} | "
          f"{cli['accuracy']:.4f} | {cli['accuracy'] >= TARGET} |")
    if base["reached"]:
        print(f"\nspeed-up (baseline / fast median): {base['seconds'] / fast_median:.1f}x")
    else:
        per_epoch = base["seconds"] / base["epochs"]
        print(f"\nbaseline did not reach {TARGET:.1%} in {base['epochs']} epochs "
              f"({base['seconds']:.1f}s); speed-up is at least "
              f"{base['seconds'] / fast_median:.1f}x (EXTRAPOLATED: one more epoch would make "
              f"it {(base['seconds'] + per_epoch) / fast_median:.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": base, "fast": fast, "cli": cli,
                                               "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
