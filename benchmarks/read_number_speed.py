"""How fast `Recognizer.read_number` reads a 6-digit number drawn on the page's number pad
(issue 16: p50 ≤ 30 ms on this machine), and whether a change keeps every answer.

The numbers are seeded: 6 digits of one DigiLeTs writer (`../shared/digilets/`), laid out in the
three spacing classes of benchmarks/read_numbers.py (touching, normal, wide) and drawn as the
page's pad draws them (560×280 PNG, the digits about 150 px high, the page's default pen). Each
number is read warm, `--repeats` rounds; a number's time is its median over the rounds, and p50
and p90 are taken over the numbers.

With `--against OLD_SRC` (the `src` folder of an older copy, e.g. a `git worktree`), the same
numbers are read by the old code too, in a second process, the two taking turns round by round
(ABBA), and new/old ratios are reported: of the p50s and p90s, and the median of the per-number
ratios. With `--check`, both read a few hundred numbers (DigiLeTs in the pad's, a bold marker's
and a thin pen's style, and MNIST test digits; 2-8 digits, all three spacings) and every number,
best guess, box and digit confidence (to 1e-5) must agree; the exit status says whether it did.
`--profile` shows where the time goes (cProfile, this copy of the code).

    .venv/bin/python benchmarks/read_number_speed.py [--numbers 10] [--repeats 7]
    .venv/bin/python benchmarks/read_number_speed.py --against /tmp/rn-old/src [--check]
    .venv/bin/python benchmarks/read_number_speed.py --profile

Times depend on the machine's load: compare the ratios (both sides ran under the same load, in
alternation), not one absolute number. The models run on `--threads` threads (default 1, as a
server worker on this 2-core machine runs them).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from _source_worker import SourceWorker

if TYPE_CHECKING:
    from PIL import Image

    from digitrec.recognizer import Recognizer

REPO = Path(__file__).resolve().parents[1]
SPACINGS = ("touching", "normal", "wide")
SEED = 1616
DIGITS = 6


def _png(image: Image.Image) -> bytes:
    """A PIL image as PNG bytes, as the page uploads it."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _by_writer() -> dict[str, list]:
    """The DigiLeTs digits, by writer."""
    from read_numbers import DIGILETS

    from digitrec.data.strokes import load_strokes
    if not DIGILETS.exists():
        sys.exit(f"{DIGILETS} is missing: the DigiLeTs digits sit beside the repository")
    writers: dict[str, list] = {}
    for digit in load_strokes(DIGILETS):
        writers.setdefault(digit.writer, []).append(digit)
    return writers


def _stroke_cases(count: int, lengths: tuple[int, ...], styles: tuple[str, ...],
                  rng: np.random.Generator) -> list[dict]:
    """`count` numbers per style and spacing, each from one writer's digits, as PNG bytes."""
    from read_numbers import stroke_number
    writers = _by_writer()
    names = sorted(writers)
    cases = []
    for style in styles:
        for spacing in SPACINGS:
            for _ in range(count):
                digits = writers[names[int(rng.integers(len(names)))]]
                chosen = [digits[int(k)] for k in rng.integers(len(digits),
                                                               size=int(rng.choice(lengths)))]
                cases.append({"kind": f"DigiLeTs {style}", "spacing": spacing,
                              "truth": "".join(str(d.label) for d in chosen),
                              "image": _png(stroke_number(chosen, spacing, style, rng))})
    return cases


def _mnist_cases(count: int, rng: np.random.Generator) -> list[dict]:
    """`count` numbers of 2-8 MNIST test digits per spacing, on the pad, as PNG bytes."""
    from read_numbers import LENGTHS, mnist_number

    from digitrec.data.mnist import load_mnist
    images, labels = load_mnist(os.environ.get("DIGITREC_DATA")
                                or REPO.parent / "shared" / "mnist").split("test")
    cases = []
    for spacing in SPACINGS:
        for _ in range(count):
            picks = rng.integers(len(images), size=int(rng.choice(LENGTHS)))
            cases.append({"kind": "MNIST test", "spacing": spacing,
                          "truth": "".join(str(int(labels[k])) for k in picks),
                          "image": _png(mnist_number([images[k] for k in picks], spacing, rng))})
    return cases


def speed_cases(numbers: int) -> list[dict]:
    """The timed set: `numbers` 6-digit pad drawings per spacing class."""
    return _stroke_cases(numbers, (DIGITS,), ("canvas",), np.random.default_rng(SEED))


def check_cases(per_class: int) -> list[dict]:
    """The equivalence set: the timed set, and DigiLeTs in three styles and MNIST, 2-8 digits,
    every spacing."""
    from read_numbers import LENGTHS
    rng = np.random.default_rng([SEED, 1])
    return (speed_cases(10)
            + _stroke_cases(per_class, tuple(LENGTHS), ("canvas", "bold", "thin"), rng)
            + _mnist_cases(2 * per_class, rng))


# --- the worker: one copy of the code, in its own process ---------------------------------

def _answer(recognizer: Recognizer, image: bytes) -> dict:
    """What read_number says about one image, in JSON."""
    from digitrec.errors import DigitrecError
    try:
        r = recognizer.read_number(image)
    except DigitrecError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"number": r.number, "best_guess": r.best_guess, "boxes": [list(b) for b in r.boxes],
            "confidences": [d.confidence for d in r.digits],
            "reasons": [d.reason for d in r.digits]}


def worker(cases_file: Path, threads: int) -> None:
    """Serve commands from stdin, one JSON line each back: "warm", "time", "read", "quit"."""
    import torch
    torch.set_num_threads(threads)
    import digitrec
    from digitrec.errors import DigitrecError
    from digitrec.recognizer import Recognizer
    cases = [{**c, "image": base64.b64decode(c["image"])}
             for c in json.loads(cases_file.read_text())]
    recognizer = Recognizer.load()
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the reply channel
    out.write(json.dumps({"source": str(Path(digitrec.__file__).parents[1]),
                          "inference": recognizer.inference}) + "\n")
    out.flush()
    for command in sys.stdin:
        command = command.strip()
        if command == "quit":
            break
        if command == "warm":
            for case in cases:
                _answer(recognizer, case["image"])
            reply = len(cases)
        elif command == "time":  # wall-clock and CPU ms per case
            reply = []
            for case in cases:
                start, cpu = time.perf_counter(), time.process_time()
                try:
                    recognizer.read_number(case["image"])
                except DigitrecError:
                    pass
                reply.append([(time.perf_counter() - start) * 1e3,
                              (time.process_time() - cpu) * 1e3])
        elif command == "read":
            reply = [_answer(recognizer, c["image"]) for c in cases]
        else:
            reply = {"error": f"unknown command {command!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class Worker(SourceWorker):
    """A worker process reading the cases with the code in `source` (a `src` folder)."""

    def __init__(self, name: str, source: Path, cases_file: Path, threads: int):
        super().__init__(name, source, [__file__, "--worker", str(cases_file),
                                        "--threads", str(threads)])
        self.inference = self.hello["inference"]


# --- the parent ----------------------------------------------------------------------------

def _workers(cases: list[dict], sources: dict[str, Path], threads: int, folder: str,
             warm: bool = True) -> dict[str, Worker]:
    """One worker per source, on the same cases (warm: each has read every case once)."""
    cases_file = Path(folder) / "cases.json"  # PNG bytes as base64: never a pickle
    cases_file.write_text(json.dumps([{**c, "image": base64.b64encode(c["image"]).decode()}
                                      for c in cases]))
    workers = {name: Worker(name, source, cases_file, threads)
               for name, source in sources.items()}
    for w in workers.values() if warm else ():
        w.ask("warm")
    return workers


def _percentiles(ms: np.ndarray) -> tuple[float, float]:
    """p50 and p90."""
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 90))


def _table(per_number: dict[str, np.ndarray], spacing: np.ndarray) -> list[str]:
    """p50/p90 per spacing class (and new/old ratios when there is an old side), as markdown."""
    header = "| spacing | numbers | new p50 | new p90 |"
    rule = "|---|---:|---:|---:|"
    if "old" in per_number:
        header += " old p50 | old p90 | p50 new/old | p90 new/old | per-number new/old (median) |"
        rule += "---:|---:|---:|---:|---:|"
    lines = [header, rule]
    for group in (*SPACINGS, "all"):
        keep = spacing == group if group != "all" else np.ones(len(spacing), bool)
        new50, new90 = _percentiles(per_number["new"][keep])
        row = f"| {group} | {int(keep.sum())} | {new50:.1f} | {new90:.1f} |"
        if "old" in per_number:
            old50, old90 = _percentiles(per_number["old"][keep])
            paired = float(np.median(per_number["new"][keep] / per_number["old"][keep]))
            row += (f" {old50:.1f} | {old90:.1f} | {new50 / old50:.2f} | {new90 / old90:.2f} |"
                    f" {paired:.2f} |")
        lines.append(row)
    return lines


def time_rounds(args: argparse.Namespace) -> int:
    """Time read_number on the speed set, new (and old) in alternating rounds; print a report."""
    cases = speed_cases(args.numbers)
    sources = {"new": REPO / "src"}
    if args.against:
        sources["old"] = args.against
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        workers = _workers(cases, sources, args.threads, folder)
        times: dict[str, list] = {name: [] for name in workers}
        order = list(workers)
        for r in range(args.repeats):
            for name in order if r % 2 == 0 else order[::-1]:  # ABBA: neither side goes first
                times[name].append(workers[name].ask("time"))
        for w in workers.values():
            w.close()
    load_after = os.getloadavg()
    # (numbers, 2): wall-clock and CPU ms, each a median over the rounds
    per_number = {name: np.median(np.array(t), axis=0) for name, t in times.items()}
    spacing = np.array([c["spacing"] for c in cases])
    print(f"# read_number speed: {len(cases)} numbers of {DIGITS} digits drawn on the pad "
          f"(560×280), {args.repeats} rounds, {args.threads} model thread(s), "
          f"{workers['new'].inference}\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; {os.cpu_count()} cores")
    print("- per number: median over the rounds; p50/p90 over the numbers (ms)")
    print("\nWall clock:\n")
    print("\n".join(_table({n: t[:, 0] for n, t in per_number.items()}, spacing)))
    print("\nCPU time of the reading process (what the load does not add):\n")
    print("\n".join(_table({n: t[:, 1] for n, t in per_number.items()}, spacing)))
    return 0


def check(args: argparse.Namespace) -> int:
    """Read the equivalence set with the new and the old code; 1 if any answer differs."""
    cases = check_cases(args.per_class)
    with tempfile.TemporaryDirectory() as folder:
        workers = _workers(cases, {"new": REPO / "src", "old": args.against}, args.threads,
                           folder, warm=False)
        new, old = workers["new"].ask("read"), workers["old"].ask("read")
        inference = workers["new"].inference
        for w in workers.values():
            w.close()
    differ, worst = [], 0.0
    for case, a, b in zip(cases, new, old, strict=True):
        same = a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != "confidences")
        if same and "confidences" in a:
            gap = float(np.max(np.abs(np.subtract(a["confidences"], b["confidences"]))))
            worst = max(worst, gap)
            same = gap <= 1e-5
        if not same:
            differ.append(f"{case['kind']}, {case['spacing']}, {case['truth']}: "
                          f"new {a.get('best_guess', a.get('error'))} "
                          f"old {b.get('best_guess', b.get('error'))}")
    kinds = {c["kind"] for c in cases}
    errors = sum("error" in a for a in new)
    print(f"equivalence ({inference}): {len(cases)} numbers ({', '.join(sorted(kinds))}; "
          f"2-8 digits; {', '.join(SPACINGS)}), {len(cases) - len(differ)} read the same by new "
          f"and old ({errors} refused by both alike); largest digit-confidence difference "
          f"{worst:.2g}")
    for line in differ[:20]:
        print(f"- differs: {line}")
    return 1 if differ else 0


def profile(args: argparse.Namespace) -> int:
    """cProfile of this copy reading the speed set (warm), the top functions by own time."""
    import cProfile
    import pstats

    import torch
    torch.set_num_threads(args.threads)
    from digitrec.recognizer import Recognizer
    cases = speed_cases(args.numbers)
    recognizer = Recognizer.load()
    for case in cases:
        recognizer.read_number(case["image"])
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.repeats):
        for case in cases:
            recognizer.read_number(case["image"])
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumtime").print_stats("digitrec", 30)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=10, help="timed numbers per spacing class")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds")
    parser.add_argument("--threads", type=int, default=1, help="the models' threads")
    parser.add_argument("--against", type=Path, help="an older copy's src folder")
    parser.add_argument("--check", action="store_true",
                        help="compare every answer with --against's instead of timing")
    parser.add_argument("--per-class", type=int, default=20,
                        help="--check: DigiLeTs numbers per style and spacing (MNIST: twice "
                        "as many per spacing)")
    parser.add_argument("--profile", action="store_true", help="profile this copy instead")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads)
        return 0
    if args.check and not args.against:
        parser.error("--check needs --against OLD_SRC")
    if args.profile:
        return profile(args)
    return check(args) if args.check else time_rounds(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # read_numbers' helpers
    raise SystemExit(main())
