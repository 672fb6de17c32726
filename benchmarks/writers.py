"""Writer benchmark: the ensemble on all DigiLeTs writers (77 people, 3,850 digits as pen
strokes), each digit drawn as the page's pad draws it (pens 8-30 px on the 280×280 pad and on a
600×600 one) and rendered as a scan would show it (bold marker, thin ballpoint), read by
`Recognizer.predict_many` on the backend the app serves. Per condition: best guess, abstention,
accuracy when answered, accuracy at 90% and 95% coverage, worst class; per class and per writer
at the page's default pen; the most frequent confusions. This is the project's number for "real
writers", beside MNIST's.

    nice python benchmarks/writers.py [--strokes /work/shared/digilets/digits.jsonl]
        [--limit N] [--conditions NAME ...] [--models DIR] [--inference int8]
        [--out docs/robustness.md] [--plot docs/writers.png]

Without --out the Markdown goes to stdout. With --out the section between this script's
markers is replaced (or put at the top of the file), and the rest of the file is kept."""

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

from digitrec.data.strokes import DEFAULT_PEN, PAD_SIZE, load_strokes
from digitrec.evaluation.labelled import LabelledEvaluation, evaluate_strokes, write_report
from digitrec.recognizer import Recognizer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STROKES = REPO.parent / "shared" / "digilets" / "digits.jsonl"
BEGIN = "<!-- benchmarks/writers.py: begin (generated; rerun to update) -->"
END = "<!-- benchmarks/writers.py: end -->"
DEFAULT = "canvas 280, pen 23"
# name -> (pad or scan side in pixels, pen in pixels or None for the style's, style)
CONDITIONS: dict[str, tuple[int, float | None, str]] = {
    "canvas 280, pen 8": (PAD_SIZE, 8, "canvas"),
    "canvas 280, pen 15": (PAD_SIZE, 15, "canvas"),
    DEFAULT: (PAD_SIZE, DEFAULT_PEN, "canvas"),
    "canvas 280, pen 30": (PAD_SIZE, 30, "canvas"),
    "canvas 600, pen 8": (600, 8, "canvas"),
    "canvas 600, pen 23": (600, DEFAULT_PEN, "canvas"),
    "canvas 600, pen 30": (600, 30, "canvas"),
    "scan, bold": (PAD_SIZE, None, "bold"),
    "scan, thin": (PAD_SIZE, None, "thin"),
}
# Issue 15's targets (for later; reported, not enforced)
TARGET_BEST, TARGET_95, TARGET_CLASS, TARGET_SCAN = 0.990, 0.997, 0.97, 0.985


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
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def pct(value: float | None) -> str:
    """A rate as a percentage with two decimals, or "-"."""
    return "-" if value is None else f"{value:.2%}"


def condition_row(name: str, result: LabelledEvaluation, seconds: float) -> str:
    """One Markdown table row of the risk numbers under a condition."""
    s = result.summary()
    worst = result.worst_class()
    worst_text = f"{worst[0]} ({pct(worst[1])})" if worst else "-"
    return (f"| {name} | {pct(s['best_guess_accuracy'])} | {pct(s['abstention_rate'])} | "
            f"{pct(s['accuracy_when_answered'])} | {pct(s['accuracy_at_90_coverage'])} | "
            f"{pct(s['accuracy_at_95_coverage'])} | {worst_text} | {len(result.unreadable)} | "
            f"{seconds:.0f} |")


def class_table(results: dict[str, LabelledEvaluation]) -> list[str]:
    """Best-guess accuracy per class (rows: conditions), then the default's full numbers."""
    lines = ["| condition | " + " | ".join(str(d) for d in range(10)) + " |",
             "|---|" + "---:|" * 10]
    for name, result in results.items():
        per_class = result.per_class()
        lines.append(f"| {name} | " + " | ".join(
            pct(per_class[d]["best_guess_accuracy"]) for d in range(10)) + " |")
    return lines


def default_class_table(result: LabelledEvaluation) -> list[str]:
    """The default condition per class: images, best guess, abstains, answered, 95%, precision."""
    per_class = result.per_class()
    lines = ["| digit | images | best guess | abstains | right when answering | "
             "at 90% | at 95% | precision |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in range(10):
        c = per_class[d]
        lines.append(f"| {d} | {c['n']} | {pct(c['best_guess_accuracy'])} | "
                     f"{pct(c['abstention_rate'])} | {pct(c['accuracy_when_answered'])} | "
                     f"{pct(c['accuracy_at_90_coverage'])} | {pct(c['accuracy_at_95_coverage'])} "
                     f"| {pct(c['precision'])} |")
    return lines


def writer_lines(result: LabelledEvaluation, worst: int = 10) -> list[str]:
    """The spread over writers and the `worst` writers, at one condition."""
    groups = result.per_group()
    accuracy = {w: g["best_guess_accuracy"] for w, g in groups.items()}
    values = np.array(list(accuracy.values()))
    lines = [f"{len(groups)} writers: median {pct(float(np.median(values)))}, lowest "
             f"{pct(float(values.min()))}; {int((values == 1).sum())} read without a best-guess "
             f"error, {int((values < 0.95).sum())} below 95%, {int((values < 0.90).sum())} "
             "below 90%.", "",
             "| writer | best guess | abstains | right when answering | misread (true→guess) |",
             "|---|---:|---:|---:|---|"]
    writers = np.array(result.groups)
    for w in sorted(accuracy, key=lambda w: (accuracy[w], w))[:worst]:
        g = groups[w]
        mask = (writers == w) & ~result.right
        errors = ", ".join(f"{t}→{p}" for t, p in zip(result.labels[mask], result.guesses[mask],
                                                      strict=True))
        lines.append(f"| {w} | {pct(g['best_guess_accuracy'])} | {pct(g['abstention_rate'])} | "
                     f"{pct(g['accuracy_when_answered'])} | {errors} |")
    return lines


def confusion_lines(results: dict[str, LabelledEvaluation], top: int = 10) -> list[str]:
    """The most frequent confusions: at the default, and summed over all conditions."""
    total = sum(r.confusion() for r in results.values())
    np.fill_diagonal(total, 0)
    pairs = sorted(((int(total[t, p]), t, p) for t in range(10) for p in range(10)
                    if total[t, p]), key=lambda x: (-x[0], x[1], x[2]))[:top]
    lines = ["| true → best guess | at the default pen | all conditions |", "|---|---:|---:|"]
    default = results.get(DEFAULT)
    at_default = default.confusion() if default is not None else None
    for count, t, p in pairs:
        lines.append(f"| {t} → {p} | {at_default[t, p] if at_default is not None else '-'} | "
                     f"{count} |")
    return lines


def targets(results: dict[str, LabelledEvaluation]) -> list[str]:
    """Issue 15's 'done when' targets against these numbers (not enforced yet)."""
    lines = []
    if DEFAULT in results:
        s = results[DEFAULT].summary()
        worst = results[DEFAULT].worst_class()
        lines += [f"- best guess at the default pen ≥ {TARGET_BEST:.1%}: "
                  f"{pct(s['best_guess_accuracy'])}",
                  f"- accuracy on the 95% most confident ≥ {TARGET_95:.1%}: "
                  f"{pct(s['accuracy_at_95_coverage'])}",
                  f"- no class below {TARGET_CLASS:.0%}: worst {worst[0]} at {pct(worst[1])}"
                  if worst else ""]
    for name in ("scan, bold", "scan, thin"):
        if name in results:
            lines.append(f"- {name} ≥ {TARGET_SCAN:.1%}: "
                         f"{pct(results[name].summary()['best_guess_accuracy'])}")
    return [line for line in lines if line]


def plot_writers(results: dict[str, LabelledEvaluation], path: Path) -> None:
    """Per-writer best-guess accuracy, writers sorted by the default condition, one line per
    shown condition."""
    from matplotlib.figure import Figure

    shown = [n for n in (DEFAULT, "canvas 280, pen 8", "canvas 280, pen 30", "scan, bold",
                         "scan, thin") if n in results] or list(results)[:1]
    base = results[shown[0]].per_group()
    order = sorted(base, key=lambda w: (base[w]["best_guess_accuracy"], w))
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(order))
    for name in shown:
        groups = results[name].per_group()
        ax.plot(x, [100 * groups[w]["best_guess_accuracy"] for w in order],
                marker="o" if name == shown[0] else ".", markersize=4 if name == shown[0] else 3,
                linewidth=1.4 if name == shown[0] else 0.8, label=name)
    ax.axhline(100 * TARGET_BEST, color="grey", linestyle=":", linewidth=1,
               label=f"target {TARGET_BEST:.0%} (overall)")
    lowest = min(g["best_guess_accuracy"] for r in shown for g in results[r].per_group().values())
    ax.set(xlabel=f"writer (sorted by best-guess accuracy at {shown[0]})",
           ylabel="best guess right (%)", xlim=(-1, len(order)),
           ylim=(min(90, 100 * lowest - 2), 100.5),
           title="DigiLeTs: best-guess accuracy per writer (50 digits each)")
    ax.set_xticks(x, order, rotation=90, fontsize=6)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)


def report(results: dict[str, LabelledEvaluation], seconds: dict[str, float],
           recognizer: Recognizer, strokes: Path, writers: int, plot: str | None,
           confusions_png: str | None) -> str:
    """The Markdown section: how it was run, then the tables."""
    command = "nice python benchmarks/writers.py " + " ".join(shlex.quote(a)
                                                              for a in sys.argv[1:])
    n = len(next(iter(results.values())).names) if results else 0
    lines = [
        BEGIN,
        "# Robustness on real writers (DigiLeTs)",
        "",
        "The project's number for real handwriting, beside MNIST's: 77 people (Tübingen, "
        "2019) each wrote every digit five times on a tablet (DigiLeTs; `/work/shared/"
        "digilets`, not in the repo, never trained on). Each digit is drawn exactly as the "
        "page's pad draws a pointer's strokes (`digitrec.data.strokes`: the tablet's square on "
        "the whole pad, round black strokes on white, sent as PNG) at several pens and pad "
        "sizes, and rendered as a scan would show it (dark ink on grey paper with grain, "
        "slightly blurred: a bold marker, 10% of the side, or a thin ballpoint, 1.2%). "
        "`digitrec evaluate --strokes FILE [--pen --pad --style]` measures one condition.",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- models: {', '.join(recognizer.ensemble.members)}, run by {recognizer.inference} "
        f"(what the web app serves), abstention threshold {recognizer.threshold:g} or the "
        "members disagree",
        f"- data: `{strokes}`, {n:,} digits by {writers} writers per condition",
        "",
        "| condition | best guess | abstains | right when answering | at 90% coverage | "
        "at 95% coverage | worst class | unreadable | seconds |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
        *(condition_row(name, r, seconds[name]) for name, r in results.items()),
        "",
        "\"At 90% coverage\": accuracy on the 90% of digits it is most confident of. "
        "\"Right when answering\": of the digits it does not abstain on.",
        "",
        "Issue 15's targets (for later), against these numbers:",
        "",
        *targets(results),
        "",
        "## Per class",
        "",
        "Best guess right, per condition:",
        "",
        *class_table(results),
    ]
    if DEFAULT in results:
        lines += ["", f"At the page's default ({DEFAULT}):", "",
                  *default_class_table(results[DEFAULT]), "",
                  "## Per writer", "", f"At the page's default ({DEFAULT}):", "",
                  *writer_lines(results[DEFAULT])]
    if plot:
        lines += ["", f"![Best-guess accuracy per writer]({plot})"]
    lines += ["", "## Most frequent confusions", "", *confusion_lines(results)]
    if confusions_png:
        lines += ["", "At the default pen, as the models saw them:", "",
                  f"![The most frequent confusions at the default pen]({confusions_png})"]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path) -> None:
    """Replace this script's section in `path` (between the markers), or put it at the top."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        new = text + ("\n" + old if old else "")
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    """Run every condition, write the report and the plots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", default=str(DEFAULT_STROKES),
                        help="DigiLeTs digits.jsonl (default: ../shared/digilets/digits.jsonl)")
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS),
                        default=list(CONDITIONS), metavar="NAME",
                        help=f"subset of: {'; '.join(CONDITIONS)}")
    parser.add_argument("--limit", type=int, help="first N digits only (quick checks)")
    parser.add_argument("--models", help="model directory (default: bundled)")
    parser.add_argument("--inference", help="backend: onnx, int8 or torch (default: what the "
                        "web app serves)")
    parser.add_argument("--out", help="Markdown file to put the section in (default: stdout)")
    parser.add_argument("--plot", help="per-writer PNG (with --out: default docs/writers.png)")
    parser.add_argument("--confusions", help="PNG of the default's most frequent confusions "
                        "(with --out: default docs/writers-confusions.png)")
    args = parser.parse_args(argv)
    if args.out:
        args.plot = args.plot or str(REPO / "docs" / "writers.png")
        args.confusions = args.confusions or str(REPO / "docs" / "writers-confusions.png")

    strokes = Path(args.strokes)
    digits = load_strokes(strokes)[:args.limit]
    recognizer = Recognizer.load(args.models, backend=args.inference)
    results: dict[str, LabelledEvaluation] = {}
    seconds: dict[str, float] = {}
    progress = sys.stderr.isatty()
    for name in args.conditions:
        size, pen, style = CONDITIONS[name]
        began = time.perf_counter()
        results[name] = evaluate_strokes(recognizer, strokes, size=size, pen=pen, style=style,
                                         progress=progress, digits=digits)
        seconds[name] = time.perf_counter() - began
        s = results[name].summary()
        print(f"{name:<20} best guess {pct(s['best_guess_accuracy'])}  abstains "
              f"{pct(s['abstention_rate'])}  answered {pct(s['accuracy_when_answered'])}  "
              f"90% {pct(s['accuracy_at_90_coverage'])}  95% {pct(s['accuracy_at_95_coverage'])}"
              f"  ({seconds[name]:.0f} s)", file=sys.stderr)

    out_dir = Path(args.out).resolve().parent if args.out else None

    def shown(path: str | None) -> str | None:
        """The path as the Markdown links it: relative to the report when written."""
        if path is None or out_dir is None:
            return path
        return os.path.relpath(Path(path).resolve(), out_dir)

    if args.plot:
        plot_writers(results, Path(args.plot))
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.confusions and DEFAULT in results:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            made = write_report(results[DEFAULT], tmp)
            Path(args.confusions).write_bytes(made[1].read_bytes())
        print(f"wrote {args.confusions}", file=sys.stderr)
    text = report(results, seconds, recognizer, strokes, len({d.writer for d in digits}),
                  shown(args.plot), shown(args.confusions) if DEFAULT in results else None)
    if args.out:
        write_section(text, Path(args.out))
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
