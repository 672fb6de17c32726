"""How much CPU `digitrec.preprocess.preprocess` spends per image, stage by stage, and whether a
change keeps every output byte for byte.

The timed inputs are seeded and made once: canvas PNGs as the end-to-end benchmark draws them
(`synth.canvas_png`: MNIST test digits, black strokes on a transparent 280×280 canvas), the
page's pad (DigiLeTs digits drawn by `render_strokes(style="canvas")`, RGBA on opaque white, at
several pens), photos and scans (every other `synth.CONDITIONS` rendering of MNIST test digits)
and read_number pieces (the ink maps `segment_digits` normalises while reading the numbers of
benchmarks/read_number_speed.py; timed as segment reads them, `to_mnist(digit_crop(piece))`).
Stages follow `preprocess`: decode (`load_image`), `grey_mode`, `planes`, ink
(`ink_from_planes`), crop (`digit_crop`), `to_mnist`, with the reduced first look and the
full-resolution retry as `preprocess` takes them; "preprocess" is the plain call, timed
separately.

With `--against OLD_SRC` (the `src` folder of an older copy, e.g. a `git worktree`), the old
code runs the same inputs in a second process, the two taking turns every ten inputs (ABBA), and
new/old ratios are reported. Per kind and stage: the CPU ms per image of each round (mean over
the kind's images), the median over the rounds. With `--check`, old and new preprocess ≥ 10,000
inputs (all synth conditions on MNIST test digits, pad drawings at several pens and styles,
canvas PNGs of several sizes, read_number pieces, tiny, huge, blank and broken inputs, ink maps
of odd dtypes) and every 28×28 uint8 output and every error (type and message) must be the
same; the exit status says whether they were. Inputs and outputs travel between the processes
as .npz and JSON files, never pickles. `--profile KIND` shows where this copy's time goes.

    .venv/bin/python benchmarks/preprocess_speed.py [--repeats 7]
    .venv/bin/python benchmarks/preprocess_speed.py --against /tmp/pp-old/src [--check]
    .venv/bin/python benchmarks/preprocess_speed.py --profile canvas

Times are CPU time of the preprocessing process (`time.process_time`), numpy's BLAS held to one
thread (as `predict_many` holds it), both sides pinned to one core and with fixed glibc malloc
thresholds (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_: left adaptive, one process may keep
paying page faults for the same image buffers that the other reuses, which made two copies of
the same code differ by up to 30% per image). They depend on the machine's load: compare the
ratios (both sides ran under the same load, in alternation), not one absolute number.
`--profile` runs in this process, with the default malloc.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _source_worker import SourceWorker
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DIGILETS = REPO.parent / "shared" / "digilets" / "digits.jsonl"
SEED = 2027
KINDS = ("canvas", "pad", "photo", "pieces")
STAGES = ("decode", "grey_mode", "planes", "ink", "crop", "to_mnist")
CHUNK = 10  # cases timed by one side before the other takes its turn

Case = dict[str, Any]  # kind, how ("source": preprocess it; "piece": segment's path; "ink":
#                        normalize_digit) and input (bytes, a numpy array or a PIL image)


# --- inputs ---------------------------------------------------------------------------------

def _mnist_test() -> np.ndarray:
    """MNIST's test digits (uint8, light on black)."""
    from digitrec.data.mnist import load_mnist
    images, _ = load_mnist(os.environ.get("DIGITREC_DATA")
                           or REPO.parent / "shared" / "mnist").split("test")
    return images


def _png(image: Image.Image) -> bytes:
    """A PIL image as PNG bytes (fast compression: the pixels are what matters)."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _conditions(images: np.ndarray, per: int, rng: np.random.Generator,
                only: set[str] | None = None) -> list[Case]:
    """`per` MNIST test digits in each synth condition (canvas_png is kind "canvas")."""
    from digitrec.data.synth import CONDITIONS
    cases = []
    for name, render in CONDITIONS.items():
        if only is not None and name not in only:
            continue
        for k in rng.choice(len(images), per, replace=False):
            cases.append({"kind": "canvas" if name == "canvas_png" else "photo",
                          "label": name, "how": "source", "input": render(images[k], rng)})
    return cases


def _pad(count: int, pens: tuple[float | None, ...], styles: tuple[str, ...],
         rng: np.random.Generator) -> list[Case]:
    """DigiLeTs digits drawn on the page's 280×280 pad (PNG), `count` per pen and style."""
    from digitrec.data.strokes import load_strokes, render_strokes
    if not DIGILETS.exists():
        sys.exit(f"{DIGILETS} is missing: the DigiLeTs digits sit beside the repository")
    digits = load_strokes(DIGILETS)
    cases = []
    for style in styles:
        for pen in pens:
            for k in rng.choice(len(digits), count, replace=False):
                image = render_strokes(digits[k].strokes, pen=pen, style=style,
                                       seed=int(rng.integers(1 << 30)))
                cases.append({"kind": "pad", "label": f"{style} pen {pen or 'default'}",
                              "how": "source", "input": _png(image)})
    return cases


def _pieces(numbers: int, check: bool) -> list[Case]:
    """The ink maps segment_digits normalises while reading read_number_speed's numbers (all
    candidate pieces, as read_number cuts them)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import read_number_speed as rns

    import digitrec.preprocess.segment as segment
    cases_in = rns.check_cases(numbers) if check else rns.speed_cases(numbers)
    seen: list[np.ndarray] = []
    digit_crop = segment.digit_crop

    def spy(ink: np.ndarray) -> tuple[np.ndarray, int]:
        seen.append(np.array(ink, np.float32))
        return digit_crop(ink)

    segment.digit_crop = spy
    try:
        for case in cases_in:
            try:
                segment.segment_digits(case["image"], score=lambda batch: np.ones(len(batch)))
            except Exception:  # noqa: BLE001 - refused numbers still cut their pieces
                pass
    finally:
        segment.digit_crop = digit_crop
    return [{"kind": "pieces", "label": "read_number piece", "how": "piece", "input": p}
            for p in seen]


def timing_cases(per_kind: int) -> list[Case]:
    """The timed set: `per_kind` canvas PNGs and pad drawings, photos in every other condition,
    and the pieces of read_number_speed's timed numbers (first `per_kind` of them)."""
    rng = np.random.default_rng(SEED)
    images = _mnist_test()
    photo = _conditions(images, max(1, per_kind // 13), rng)
    canvas = [c for c in photo if c["kind"] == "canvas"]
    photo = [c for c in photo if c["kind"] == "photo"]
    canvas += _conditions(images, per_kind - len(canvas), rng, {"canvas_png"})
    pad = _pad(per_kind // 4, (None, 8.0, 14.0, 35.0), ("canvas",), rng)
    return canvas + pad + photo + _pieces(10, check=False)[:per_kind]


def _edge_cases(rng: np.random.Generator, images: np.ndarray) -> list[Case]:
    """Tiny, huge, blank, transparent, broken and odd-mode inputs, and ink maps of odd dtypes."""
    from digitrec.data.synth import canvas_png
    cases: list[Case] = []

    def add(label: str, source: Any, how: str = "source") -> None:
        cases.append({"kind": "edge", "label": label, "how": how, "input": source})

    for h, w in [(1, 1), (1, 5), (5, 1), (2, 2), (3, 7), (8, 8), (13, 4), (28, 28), (1, 400)]:
        for kind in range(4):
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
            if kind == 1:
                a = (a > 128).astype(np.uint8) * 255
            elif kind == 2:
                a = np.zeros((h, w), np.uint8)
                a[h // 2, w // 2] = 255
            elif kind == 3:
                a = rng.random((h, w)).astype(np.float32)
            add(f"tiny {h}x{w}", a)
            add(f"tiny ink {h}x{w}", a.astype(np.float32) / max(1.0, float(a.max())), "ink")
    for value in (0, 1, 128, 254, 255):
        add(f"uniform {value}", np.full((120, 90), value, np.uint8))
        add(f"uniform RGBA {value}", _png(Image.new("RGBA", (300, 200), (value,) * 4)))
    add("transparent", _png(Image.new("RGBA", (280, 280), (0, 0, 0, 0))))
    add("speck", _png(Image.fromarray(np.pad(np.full((2, 2), 0, np.uint8), 300,
                                             constant_values=255))))
    add("noise", rng.integers(0, 256, (300, 400), dtype=np.uint8))
    add("noise RGBA", rng.integers(0, 256, (200, 200, 4), dtype=np.uint8))
    add("not an image", b"hello, this is not an image")
    add("empty", b"")
    png = canvas_png(images[0], rng)
    add("truncated PNG", png[:len(png) // 2])
    add("PNG header only", png[:40])
    add("NaN image", np.full((20, 20), np.nan, np.float32))
    add("NaN ink", np.full((20, 20), np.nan, np.float32), "ink")
    add("inf ink", np.where(rng.random((30, 30)) < 0.1, np.inf, 0).astype(np.float64), "ink")
    add("bool ink", rng.random((40, 30)) < 0.2, "ink")
    add("int ink", rng.integers(0, 3, (40, 30)), "ink")
    add("complex ink", np.zeros((4, 4), np.complex64), "ink")
    add("3-D ink", np.zeros((4, 4, 3), np.float32), "ink")
    add("empty ink", np.zeros((0, 5), np.float32), "ink")
    add("negative int image", np.full((10, 10), -3, np.int32))
    add("5-channel image", np.zeros((10, 10, 5), np.uint8))
    for k in rng.choice(len(images), 8, replace=False):
        digit = 255 - images[k]
        big = Image.fromarray(digit).resize((3000, 4000), Image.BICUBIC)
        add("huge 3000x4000 PNG", _png(big))
        add("huge JPEG", _jpeg(big.resize((2500, 1900))))
        add("16-bit PNG", _png(Image.fromarray(digit.astype(np.uint16) * 257)))
        add("float F image", Image.fromarray(digit.astype(np.float32) * 3.0 - 40.0, "F"))
        add("I;16 image", Image.fromarray(digit.astype(np.uint16) * 200))
        add("LA image", Image.fromarray(np.stack([digit, 255 - digit], axis=-1), "LA"))
        add("P with transparency", _gif(digit))
        add("CMYK JPEG", _jpeg(Image.fromarray(digit).convert("CMYK")))
        add("wide strip", np.tile(digit, (1, 40)))
        add("float64 image", digit.astype(np.float64) / 255.0)
        add("bool image", digit > 128)
        add("RGBA grey ink", _png(Image.fromarray(np.dstack([np.full_like(digit, 90)] * 3
                                                            + [255 - digit]), "RGBA")))
        add("ink map", images[k].astype(np.float32) / 255.0, "ink")
        add("ink map upscaled", np.asarray(Image.fromarray(images[k]).resize(
            (300, 300), Image.BICUBIC), np.float32) / 255.0, "ink")
    return cases


def _jpeg(image: Image.Image) -> bytes:
    """JPEG bytes, quality 80."""
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def _gif(digit: np.ndarray) -> bytes:
    """A palette GIF with its lightest colour transparent."""
    image = Image.fromarray(digit).convert("P")
    out = io.BytesIO()
    image.save(out, format="GIF", transparency=int(np.asarray(image).max()))
    return out.getvalue()


def check_cases() -> list[Case]:
    """The equivalence set (≥ 10,000 inputs)."""
    from _canvas import canvas_png
    rng = np.random.default_rng([SEED, 1])
    images = _mnist_test()
    cases = _conditions(images, 500, rng)
    cases += _pad(100, (None, 3.0, 6.0, 10.0, 16.0, 30.0, 50.0), ("canvas",), rng)
    cases += _pad(100, (None,), ("bold", "thin"), rng)
    cases += [{"kind": "canvas", "label": f"_canvas {side} px, pen {pen}", "how": "source",
               "input": canvas_png(side, pen)}
              for side in (28, 64, 140, 280, 560, 1100) for pen in (1, 3, 8, 18, 40, 90)]
    cases += _pieces(20, check=True)
    return cases + _edge_cases(rng, images)


# --- transport: .npz and JSON, never a pickle -----------------------------------------------

def save_cases(cases: list[Case], folder: Path) -> Path:
    """Write the cases as cases.npz (one array each) and cases.json (what each array is)."""
    arrays, manifest = {}, []
    for i, case in enumerate(cases):
        source = case["input"]
        entry = {"kind": case["kind"], "label": case["label"], "how": case["how"]}
        if isinstance(source, bytes):
            entry["type"], arrays[str(i)] = "bytes", np.frombuffer(source, np.uint8)
        elif isinstance(source, Image.Image):
            entry.update(type="image", mode=source.mode, size=list(source.size))
            arrays[str(i)] = np.frombuffer(source.tobytes(), np.uint8)
        else:
            entry["type"], arrays[str(i)] = "array", np.asarray(source)
        manifest.append(entry)
    np.savez(folder / "cases.npz", **arrays)
    (folder / "cases.json").write_text(json.dumps(manifest))
    return folder


def load_cases(folder: Path) -> list[Case]:
    """The cases save_cases wrote."""
    manifest = json.loads((folder / "cases.json").read_text())
    cases = []
    with np.load(folder / "cases.npz", allow_pickle=False) as data:
        for i, entry in enumerate(manifest):
            a = data[str(i)]
            if entry["type"] == "bytes":
                source: Any = a.tobytes()
            elif entry["type"] == "image":
                source = Image.frombytes(entry["mode"], tuple(entry["size"]), a.tobytes())
            else:
                source = a
            cases.append({**entry, "input": source})
    return cases


# --- the worker: one copy of the code, in its own process -----------------------------------

def _stages(cpu: Callable[[], float]) -> Callable[[Case], dict[str, float]]:
    """A function that preprocesses one case as `preprocess` does, returning CPU ms per stage."""
    from digitrec.errors import NoDigitError
    from digitrec.io import WORK_SIDE, load_image
    from digitrec.preprocess import PREVIEW_SIDE, STROKE_SIDE, digit_crop, to_mnist
    from digitrec.preprocess.ink import grey_mode, ink_from_planes, planes

    def run(case: Case) -> dict[str, float]:
        ms = dict.fromkeys(STAGES, 0.0)
        t = cpu()

        def lap(stage: str) -> None:
            nonlocal t
            now = cpu()
            ms[stage] += (now - t) * 1e3
            t = now

        try:
            if case["how"] == "piece":
                crop = digit_crop(np.ascontiguousarray(case["input"], np.float32))[0]
                lap("crop")
                to_mnist(crop)
                lap("to_mnist")
                return ms
            image = load_image(case["input"], max_side=WORK_SIDE)
            lap("decode")
            image = grey_mode(image)
            lap("grey_mode")
            factor = max(image.size) // PREVIEW_SIDE
            if factor >= 2:
                try:
                    grey_alpha = planes(image, factor)
                    lap("planes")
                    ink = ink_from_planes(*grey_alpha)
                    lap("ink")
                    crop, scale = digit_crop(ink)
                    lap("crop")
                    if max(crop.shape) * scale >= STROKE_SIDE:
                        to_mnist(crop)
                        lap("to_mnist")
                        return ms
                except NoDigitError:
                    lap("crop")
            grey_alpha = planes(image)
            lap("planes")
            ink = ink_from_planes(*grey_alpha)
            lap("ink")
            crop = digit_crop(ink)[0]
            lap("crop")
            to_mnist(crop)
            lap("to_mnist")
        except Exception:  # noqa: BLE001 - refused inputs cost time too
            lap("to_mnist")
        return ms

    return run


def _output(case: Case) -> tuple[np.ndarray | None, str | None]:
    """What this copy makes of one case: the 28×28 image, or the error as "Type: message"."""
    from digitrec.preprocess import digit_crop, normalize_digit, preprocess, to_mnist
    try:
        if case["how"] == "piece":
            out = to_mnist(digit_crop(np.ascontiguousarray(case["input"], np.float32))[0])
        elif case["how"] == "ink":
            out = normalize_digit(case["input"])
        else:
            out = preprocess(case["input"])
    except Exception as exc:  # noqa: BLE001 - every error must match, whatever its type
        return None, f"{type(exc).__name__}: {exc}"
    a = np.asarray(out)
    if a.shape != (28, 28) or a.dtype != np.uint8:
        return None, f"bad output: {a.dtype} {a.shape}"
    return a, None


def worker(folder: Path) -> None:
    """Serve commands from stdin, one JSON line each back: "time START STOP" (the cases in
    that slice), "check OUT", "quit"."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)  # as predict_many: numpy's BLAS threads only spin on these sizes
    import digitrec
    from digitrec.preprocess import digit_crop, preprocess, to_mnist
    cases = load_cases(folder)
    cpu = time.process_time
    staged = _stages(cpu)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the reply channel
    out.write(json.dumps({"source": str(Path(digitrec.__file__).parents[1])}) + "\n")
    out.flush()
    for command in sys.stdin:
        command, _, argument = command.strip().partition(" ")
        if command == "quit":
            break
        if command == "time":  # per case of a slice: CPU ms per stage, and of the plain call
            start, stop = (int(x) for x in argument.split())
            reply = []
            for case in cases[start:stop]:
                ms = staged(case)
                start = cpu()
                _run_case(case, preprocess, digit_crop, to_mnist)
                ms["preprocess"] = (cpu() - start) * 1e3
                reply.append(ms)
        elif command == "check":
            results = [_output(case) for case in cases]
            np.savez(argument, out=np.stack([np.zeros((28, 28), np.uint8) if a is None else a
                                             for a, _ in results]))
            Path(argument + ".json").write_text(json.dumps([e for _, e in results]))
            reply = len(results)
        else:
            reply = {"error": f"unknown command {command!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _run_case(case: dict, preprocess, digit_crop, to_mnist) -> None:
    """Preprocess one case (a read_number piece: crop and normalise) with the given code's
    functions; an input it refuses is timed as well (its error is what the check compares)."""
    try:
        if case["how"] == "piece":
            to_mnist(digit_crop(np.ascontiguousarray(case["input"], np.float32))[0])
        else:
            preprocess(case["input"])
    except Exception:  # noqa: BLE001, S110
        pass


def start_worker(name: str, source: Path, folder: Path) -> SourceWorker:
    """A worker process running this script's --worker with the code in `source`, pinned to one
    core with fixed malloc thresholds: glibc's malloc adapts its thresholds for returning memory
    to the system to each process's history, and fixed ones keep one side from paying page
    faults the other does not (seen: 2.5x the CPU in one stage between two copies of the same
    code)."""
    return SourceWorker(name, source, [__file__, "--worker", str(folder)], env={
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)},
        one_core=True)


# --- the parent -----------------------------------------------------------------------------

def time_rounds(args: argparse.Namespace) -> int:
    """Time the stages, new (and old) in alternating rounds; print a markdown report."""
    cases = timing_cases(args.per_kind)
    sources = {"new": REPO / "src"}
    if args.against:
        sources["old"] = args.against
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        save_cases(cases, Path(folder))
        workers = {name: start_worker(name, source, Path(folder))
                   for name, source in sources.items()}
        order = list(workers)
        rounds: dict[str, list[list[dict]]] = {name: [] for name in workers}
        for r in range(args.repeats + 1):  # round 0 warms up and is not counted
            times: dict[str, list[dict]] = {name: [] for name in workers}
            for k, start in enumerate(range(0, len(cases), CHUNK)):
                for name in order if (r + k) % 2 == 0 else order[::-1]:  # ABBA, chunk by chunk
                    times[name] += workers[name].ask(f"time {start} {start + CHUNK}")
            for name in workers if r else ():
                rounds[name].append(times[name])
        for w in workers.values():
            w.close()
    load_after = os.getloadavg()
    kinds = np.array([c["kind"] for c in cases])
    columns = (*STAGES, "stages", "preprocess")

    def medians(name: str, kind: str) -> dict[str, float]:
        """Per column: the median over rounds of the mean CPU ms per image of `kind`."""
        keep = np.flatnonzero(kinds == kind)
        per_round = [{col: float(np.mean([sum(r[i][s] for s in STAGES) if col == "stages"
                                          else r[i][col] for i in keep]))
                      for col in columns} for r in rounds[name]]
        return {col: float(np.median([p[col] for p in per_round])) for col in columns}

    print(f"# preprocess speed: CPU ms per image, median of {args.repeats} rounds "
          f"(after one warm-up round), one BLAS thread\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {os.cpu_count()} cores")
    print("- inputs: " + ", ".join(f"{kind} {int((kinds == kind).sum())}" for kind in KINDS))
    for kind in KINDS:
        new = medians("new", kind)
        old = medians("old", kind) if "old" in rounds else None
        print(f"\n## {kind}\n")
        print("| stage | new ms | old ms | new/old |" if old else "| stage | ms |")
        print("|---|---:|---:|---:|" if old else "|---|---:|")
        for col in columns:
            if kind == "pieces" and col in STAGES[:4]:
                continue
            if old:
                ratio = new[col] / old[col] if old[col] > 0 else float("nan")
                print(f"| {col} | {new[col]:.3f} | {old[col]:.3f} | {ratio:.2f} |")
            else:
                print(f"| {col} | {new[col]:.3f} |")
    return 0


def check(args: argparse.Namespace) -> int:
    """Preprocess the equivalence set with the new and the old code; 1 if any output differs."""
    cases = check_cases()
    with tempfile.TemporaryDirectory() as folder:
        save_cases(cases, Path(folder))
        results = {}
        for name, source in {"new": REPO / "src", "old": args.against}.items():
            w = start_worker(name, source, Path(folder))
            target = str(Path(folder) / f"{name}.npz")
            w.ask(f"check {target}")
            w.close()
            with np.load(target, allow_pickle=False) as data:
                results[name] = (data["out"], json.loads(Path(target + ".json").read_text()))
    (new, new_errors), (old, old_errors) = results["new"], results["old"]
    differ = []
    for i, case in enumerate(cases):
        if new_errors[i] != old_errors[i] or not np.array_equal(new[i], old[i]):
            detail = (f"new {new_errors[i]!r}, old {old_errors[i]!r}" if new_errors[i]
                      or old_errors[i] else
                      f"{int((new[i] != old[i]).sum())} pixels differ, by up to "
                      f"{int(np.abs(new[i].astype(int) - old[i]).max())}")
            differ.append(f"#{i} {case['kind']} ({case['label']}): {detail}")
    by_kind: dict[str, int] = {}
    for case in cases:
        by_kind[case["kind"]] = by_kind.get(case["kind"], 0) + 1
    errors = sum(e is not None for e in old_errors)
    print(f"identity check: {len(cases):,} inputs ("
          + ", ".join(f"{k} {n:,}" for k, n in by_kind.items())
          + f"): {len(cases) - len(differ):,} identical (28×28 uint8 byte for byte, or the same "
          f"error type and message; {errors:,} refused by the old code)")
    for line in differ[:30]:
        print(f"- differs: {line}")
    return 1 if differ else 0


def profile(args: argparse.Namespace) -> int:
    """cProfile of this copy preprocessing one kind of the timed set, warm."""
    import cProfile
    import pstats

    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    from digitrec.preprocess import digit_crop, preprocess, to_mnist
    cases = [c for c in timing_cases(args.per_kind) if c["kind"] == args.profile]

    def run() -> None:
        for case in cases:
            _run_case(case, preprocess, digit_crop, to_mnist)

    run()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.repeats):
        run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumtime").print_stats("digitrec", 30)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200,
                        help="timed canvas PNGs, pad drawings and pieces (photos: 1/13 as many "
                        "per condition)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds")
    parser.add_argument("--against", type=Path, help="an older copy's src folder")
    parser.add_argument("--check", action="store_true",
                        help="compare every output with --against's instead of timing")
    parser.add_argument("--profile", choices=KINDS, help="profile this copy on one kind")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    if args.check and not args.against:
        parser.error("--check needs --against OLD_SRC")
    if args.profile:
        return profile(args)
    return check(args) if args.check else time_rounds(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # _canvas, read_number_speed
    raise SystemExit(main())
