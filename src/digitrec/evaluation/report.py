"""The comparison's report: matplotlib plots, a Markdown and an HTML write-up, the text table
(`digitrec compare` writes them; digitrec.evaluation.compare measures)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitrec.evaluation.compare import Comparison, ModelResult

PLOTS = {  # file name -> caption, in report order
    "accuracy.png": "Test accuracy",
    "time_vs_accuracy.png": "Training time vs test accuracy",
    "throughput.png": "Batched inference throughput",
    "confusion.png": "Confusion matrices (rows: true digit, columns: prediction)",
    "val_curves.png": "Per-epoch validation accuracy of the neural nets",
    "common_errors.png": "Test digits that every model gets wrong",
}
MAX_GALLERY = 40
COLOURS = {"svm": "#8c6d31", "mlp": "#6b6ecf", "cnn": "#3182bd", "ensemble": "#e6550d"}


def _bar_colours(results: list[ModelResult]) -> list[str]:
    return [COLOURS[r.kind] for r in results]


def plot_accuracy(comparison: Comparison, path: Path) -> None:
    """Horizontal bars of test accuracy, zoomed to the range that matters, errors annotated."""
    rs = comparison.results
    fig = Figure(figsize=(7, 0.45 * len(rs) + 1.2), layout="constrained")
    ax = fig.subplots()
    acc = [r.accuracy for r in rs]
    ax.barh([r.name for r in rs], acc, color=_bar_colours(rs))
    low = max(0.0, min(acc) - 0.1 * (1 - min(acc)) - 0.005)
    ax.set_xlim(low, 1.0)
    for i, r in enumerate(rs):
        ax.text(r.accuracy, i, f" {100 * r.accuracy:.2f}% ({r.errors} errors)", va="center",
                ha="right" if r.accuracy > low + 0.6 * (1 - low) else "left", fontsize=8,
                color="white" if r.accuracy > low + 0.6 * (1 - low) else "black")
    ax.invert_yaxis()
    ax.set_xlabel(f"test accuracy ({comparison.settings['test_images']:,} images)")
    fig.savefig(path, dpi=110)


def plot_time_vs_accuracy(comparison: Comparison, path: Path) -> None:
    """Scatter of training seconds (log) against test accuracy, one labelled point per model."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for r in comparison.results:
        ax.scatter(r.training_seconds, r.accuracy, s=60, color=COLOURS[r.kind], zorder=3)
        ax.annotate(r.name, (r.training_seconds, r.accuracy), textcoords="offset points",
                    xytext=(6, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=110)


def plot_throughput(comparison: Comparison, path: Path) -> None:
    """Bars of batched images/s (log), single-image latency annotated."""
    rs = comparison.results
    fig = Figure(figsize=(7, 0.45 * len(rs) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.barh([r.name for r in rs], [r.throughput for r in rs], color=_bar_colours(rs))
    ax.set_xscale("log")
    for i, r in enumerate(rs):
        ax.text(r.throughput, i, f" {r.throughput:,.0f}/s, {r.latency_ms:.1f} ms single",
                va="center", fontsize=8)
    ax.set_xlim(right=max(r.throughput for r in rs) * 8)
    ax.invert_yaxis()
    ax.set_xlabel(f"images per second, batched (log scale; "
                  f"{comparison.settings['torch_threads']} torch thread(s))")
    fig.savefig(path, dpi=110)


def plot_confusions(comparison: Comparison, path: Path) -> None:
    """One 10×10 confusion matrix per model, counts printed off the diagonal."""
    rs = comparison.results
    cols = min(4, len(rs))
    rows = math.ceil(len(rs) / cols)
    fig = Figure(figsize=(3.2 * cols, 3.3 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, r in zip(axes, rs, strict=False):
        cm = r.confusion
        ax.imshow(np.log1p(cm), cmap="Blues")
        for (t, p), count in np.ndenumerate(cm):
            if count and t != p:
                ax.text(p, t, str(count), ha="center", va="center", fontsize=6, color="#b30000")
        ax.set_title(f"{r.name}: {r.errors} errors", fontsize=10)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    for ax in axes[len(rs):]:
        ax.set_axis_off()
    fig.savefig(path, dpi=100)


def plot_val_curves(comparison: Comparison, path: Path) -> None:
    """Validation accuracy against epoch for every model that has a history."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    nets = [r for r in comparison.results if r.history]
    for r in nets:
        epochs = range(1, len(r.history) + 1)
        ax.plot(epochs, r.history, marker="o" if len(r.history) < 25 else None, markersize=3,
                label=f"{r.name} ({r.history[-1]:.4f})")
    if nets:
        ax.legend(fontsize=8, loc="lower right")
        final = [r.history[-1] for r in nets]
        ax.set_ylim(max(0.0, min(final) - 0.05), 1.0)
        ax.set_xlim(0.5, max(len(r.history) for r in nets) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no per-epoch history", ha="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation accuracy ({comparison.settings['val_images']:,} held-out images)")
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=110)


def plot_common_errors(comparison: Comparison, path: Path) -> None:
    """Gallery of test digits every model misclassifies: true label → each distinct guess."""
    indices = comparison.common_errors()
    shown = indices[:MAX_GALLERY]
    if len(shown) == 0:
        fig = Figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, "No test digit is misclassified by every model.", ha="center",
                 va="center", fontsize=12)
        fig.savefig(path, dpi=110)
        return
    cols = min(10, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(1.25 * cols, 1.5 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, i in zip(axes, shown, strict=False):
        guesses = sorted({int(r.predictions[i]) for r in comparison.results})
        ax.imshow(comparison.test_images[i], cmap="gray_r")
        ax.set_title(f"{comparison.test_labels[i]} → {','.join(map(str, guesses))}", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    more = f" (first {len(shown)} shown)" if len(indices) > len(shown) else ""
    fig.suptitle(f"{len(indices)} test digits wrong for every model{more}: true → predictions",
                 fontsize=10)
    fig.savefig(path, dpi=110)


def write_plots(comparison: Comparison, out: Path) -> list[Path]:
    """Write every PNG in PLOTS into `out`."""
    painters = [plot_accuracy, plot_time_vs_accuracy, plot_throughput, plot_confusions,
                plot_val_curves, plot_common_errors]
    paths = []
    for name, paint in zip(PLOTS, painters, strict=True):
        paint(comparison, out / name)
        paths.append(out / name)
    return paths


# --- the report -----------------------------------------------------------------------------------

HEADER = ["Model", "Test accuracy", "Errors", "Training (s)", "Images/s (batched)",
          "Latency (ms)", "Parameters", "Size"]


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def table_rows(comparison: Comparison) -> list[list[str]]:
    """The report table as strings, one row per model."""
    return [[r.name, f"{r.accuracy:.4f}", str(r.errors), f"{r.training_seconds:.1f}",
             f"{r.throughput:,.0f}", f"{r.latency_ms:.2f}", f"{r.parameters:,}",
             _size(r.size_bytes)] for r in comparison.results]


def _summary(comparison: Comparison) -> list[str]:
    s = comparison.settings
    lines = [
        f"Mode: **{s['mode']}**. Every model is scored on the same {s['test_subset']}; the "
        f"{'SVM, MLP and CNNs' if s['mode'] == 'quick' else 'SVM and MLP'} are trained here "
        f"on the first {s['train_images']:,} training images, with {s['val_images']:,} held-out "
        "validation images for the per-epoch curves.",
        "CNNs: trained fresh, as above." if s["mode"] == "quick" else
        f"CNNs: the trained models in `{s['cnn_source']}`, not retrained; their training time and "
        "validation curves come from each model card.",
        f"Timings: {s['machine']}, {s['torch_threads']} torch thread(s), {s['date']}; "
        "throughput predicts the whole test set in batches (1,000 for torch models), latency is "
        "the median of single-image predictions, preprocessing included. Wall-clock timings on a "
        "shared machine are indicative only.",
        f"The whole comparison took {s['seconds']:.0f} s.",
    ]
    if s["registered_without_weights"]:
        lines.append("Registered architectures with no trained weights (left out): "
                     + ", ".join(s["registered_without_weights"]) + ".")
    if s["mode"] == "quick":
        lines.append("This is a smoke-test run (small subsets, one epoch): the numbers say the "
                     "pipeline works, not how good the models can be.")
    return lines


def write_markdown(comparison: Comparison, path: Path) -> None:
    """report.md: summary, table, how each model was obtained, then the plots (relative links)."""
    rows = table_rows(comparison)
    lines = ["# digitrec model comparison", "", *[f"{line}  " for line in _summary(comparison)],
             "", "| " + " | ".join(HEADER) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(HEADER) - 1)) + "|",
             *["| " + " | ".join(row) + " |" for row in rows], "", "## How each model was obtained",
             "", *[f"- **{r.name}**: {r.how}" for r in comparison.results], ""]
    n_common = len(comparison.common_errors())
    for name, caption in PLOTS.items():
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
        if name == "common_errors.png":
            lines += [f"{n_common} test digit(s) are misclassified by every model.", ""]
    lines += ["The numbers are also in [results.json](results.json).", ""]
    path.write_text("\n".join(lines))


def write_html(comparison: Comparison, out: Path, path: Path) -> None:
    """report.html: the same content, self-contained (PNGs embedded as base64 data URIs)."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                   for row in table_rows(comparison))
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>digitrec model comparison</title><style>",
             "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
             "padding:0 1rem;line-height:1.45}table{border-collapse:collapse}"
             "th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}",
             "</style></head><body><h1>digitrec model comparison</h1>",
             *[f"<p>{esc(line).replace('**', '')}</p>" for line in _summary(comparison)],
             f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
             "<h2>How each model was obtained</h2><ul>",
             *[f"<li><b>{esc(r.name)}</b>: {esc(r.how)}</li>" for r in comparison.results],
             "</ul>"]
    for name, caption in PLOTS.items():
        data = base64.b64encode((out / name).read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(caption)}</h2><img alt='{esc(caption)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    path.write_text("\n".join(parts))


def write_report(comparison: Comparison, out: str | Path) -> list[Path]:
    """Write the PNGs, results.json, report.md and report.html into `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_plots(comparison, out)
    (out / "results.json").write_text(json.dumps(comparison.to_json(), indent=2) + "\n")
    write_markdown(comparison, out / "report.md")
    write_html(comparison, out, out / "report.html")
    return [*paths, out / "results.json", out / "report.md", out / "report.html"]


def format_table(comparison: Comparison) -> str:
    """The table as aligned plain text, for the terminal."""
    rows = [HEADER, *table_rows(comparison)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     for row in rows)
