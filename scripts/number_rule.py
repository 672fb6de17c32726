"""Choose how read_number combines its two readers, on numbers composed from MNIST's
*validation* digits (never the test digits, never DigiLeTs): every number is read by the
segmenter alone, by the sequence reader alone, and by the quick way (the sequence reader
confirmed digit by digit by the ensemble); then each candidate rule for answering when the
readers disagree is scored from those readings.

    .venv/bin/python scripts/number_rule.py [--per-spacing 300] [--weights DIR]

A rule says which reading is the best guess when the readers disagree ("surer", or
"sure-segmenter": the segmenter's when it is sure of every digit, else the surer;
"sure-segmenter-same-length": so, when both read as many digits; "surer-sure-cut-abstains":
the surer, but a segmenter sure of as many digits leaves the number uncertain) and when the
sequence reader's digits are answered then ("seq>=T": its least sure digit is at least T;
"never": a disagreement always leaves the number uncertain). read_number uses
"surer-sure-cut-abstains, seq>=0.99" (2026-12-03, 300 numbers per spacing: the best exact
match, as "surer", with its answers as often right and 0.6% more numbers uncertain).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from read_numbers import GAPS, LENGTHS, mnist_number  # noqa: E402

from digitrec.data.mnist import load_mnist  # noqa: E402
from digitrec.preprocess import ink_and_scale  # noqa: E402
from digitrec.recognizer import Recognizer  # noqa: E402

RULES = [(prefer, t) for prefer in ("surer", "sure-segmenter", "sure-segmenter-same-length",
                                    "surer-sure-cut-abstains")
         for t in (None, 0.9, 0.98, 0.99, 0.995)]


def collect(per_spacing: int, weights: str | None, seed: int) -> list[dict]:
    """Each number's truth, spacing and the three readings."""
    combined = Recognizer.load(weights)
    alone = copy.copy(combined)
    alone.reader = None
    images, labels = load_mnist(os.environ.get("DIGITREC_DATA") or
                                REPO.parent / "shared" / "mnist").split("val")
    rng = np.random.default_rng(seed)
    rows = []
    for spacing in GAPS:
        for _ in tqdm(range(per_spacing), desc=spacing, file=sys.stderr):
            picks = rng.integers(len(images), size=int(rng.choice(LENGTHS)))
            out = io.BytesIO()
            mnist_number([images[k] for k in picks], spacing, rng).save(out, format="PNG")
            png = out.getvalue()
            truth = "".join(str(int(labels[k])) for k in picks)
            seg = alone.read_number(png)
            ink, scale = ink_and_scale(png)
            seq = combined.reader.read(ink)
            quick = combined._agreed(seq, ink, scale)
            rows.append({"spacing": spacing, "truth": truth, "seg": seg.best_guess,
                         "seg_sure": not seg.abstained, "seg_conf": seg.confidence,
                         "seq": seq.text, "seq_conf": seq.confidence,
                         "seq_min": min((d.confidence for d in seq.digits), default=0.0),
                         "quick": quick.best_guess if quick else None,
                         "quick_sure": bool(quick) and not quick.abstained})
    return rows


def decide(row: dict, rule: tuple[str, float | None]) -> tuple[str, bool]:
    """(best guess, answered) of the combined reader under `rule`: which reading is the best
    guess on disagreement ("surer": the surer one; "sure-segmenter": the segmenter's when it
    is sure, else the surer), and the sequence reader's least digit confidence that answers a
    disagreement (None: never)."""
    prefer, least = rule
    if row["quick"] is not None:
        return row["quick"], row["quick_sure"]
    if row["seq"] == row["seg"]:
        return row["seg"], row["seg_sure"]
    if not row["seq"] or (len(row["seg"]) == 1 and len(row["seq"]) == 1):
        return row["seg"], row["seg_sure"]
    same_length = len(row["seg"]) == len(row["seq"])
    if row["seq_conf"] <= row["seg_conf"] or (row["seg_sure"] and (
            prefer == "sure-segmenter" or (prefer.endswith("same-length") and same_length))):
        return row["seg"], False
    vetoed = prefer == "surer-sure-cut-abstains" and row["seg_sure"] and same_length
    return row["seq"], least is not None and row["seq_min"] >= least and not vetoed


def table(rows: list[dict]) -> str:
    """Exact match, abstention and exact-when-answered per rule and spacing, and the
    segmenter alone."""
    lines = ["| rule | spacing | exact | abstains | exact when answered |",
             "|---|---|---:|---:|---:|"]
    for rule in ["segmenter", *RULES]:
        for spacing in [*GAPS, "all"]:
            group = [r for r in rows if spacing == "all" or r["spacing"] == spacing]
            if rule == "segmenter":
                answers = [(r["seg"], r["seg_sure"]) for r in group]
            else:
                answers = [decide(r, rule) for r in group]
            exact = [a == r["truth"] for (a, _), r in zip(answers, group, strict=True)]
            answered = [e for e, (_, sure) in zip(exact, answers, strict=True) if sure]
            name = rule if rule == "segmenter" else (
                f"{rule[0]}, " + ("never" if rule[1] is None else f"seq>={rule[1]}"))
            lines.append(f"| {name} | {spacing} | {np.mean(exact):.1%} | "
                         f"{1 - len(answered) / len(group):.1%} | "
                         f"{np.mean(answered) if answered else float('nan'):.1%} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-spacing", type=int, default=300)
    parser.add_argument("--weights")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--save", help="write the readings here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = collect(args.per_spacing, args.weights, args.seed)
    if args.save:
        Path(args.save).write_text(json.dumps(rows))
    quick = [r for r in rows if r["quick"] is not None]
    print(f"quick way taken: {len(quick) / len(rows):.1%}, right "
          f"{np.mean([r['quick'] == r['truth'] for r in quick]):.2%}" if quick else "no quick way")
    print(f"sequence reader alone: exact {np.mean([r['seq'] == r['truth'] for r in rows]):.1%}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
