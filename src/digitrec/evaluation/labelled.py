"""How a Recognizer does on anyone's own labelled digits: a folder of images (labels from file
names, subfolders or labels.csv; digitrec.io.folder) or a file of pen strokes drawn as the
page's pad or a scan would show them (digitrec.data.strokes).

Everything goes through `Recognizer.predict_many`, on the backend the app serves unless told.
The numbers are the ones users feel: best-guess accuracy, how often it abstains, how often it is
right when it answers, the accuracy on the 90% and 95% it is surest of, per class, the confusion
matrix and the most frequent confusions (with the images the models saw). An image that cannot
be read is counted and listed, not a crash; a label that is not a single digit is skipped and
reported (reading numbers is for later)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitrec.data.strokes import StrokeDigit, default_pen, load_strokes, render_strokes
from digitrec.errors import DataError
from digitrec.io.folder import read_folder
from digitrec.recognizer import Prediction, PredictionError, Recognizer

COVERAGES = (0.90, 0.95)
PROGRESS_MIN = 200  # show progress bars (on a terminal) from this many images on
TOP_CONFUSIONS = 10
EXAMPLES = 8  # example images per confusion in the report


def coverage_accuracy(right: np.ndarray, confidence: np.ndarray, coverage: float) -> float | None:
    """Accuracy on the `coverage` fraction of images with the highest confidence (ties in
    input order); None when there are none."""
    if len(right) == 0:
        return None
    order = np.argsort(-confidence, kind="stable")
    return float(right[order[:max(1, round(coverage * len(right)))]].mean())


def _rate(mask: np.ndarray) -> float | None:
    """Mean of a boolean array, None when it is empty."""
    return float(mask.mean()) if len(mask) else None


@dataclass
class LabelledEvaluation:
    """A Recognizer's answers on labelled images, and the numbers that describe them."""

    source: str  # what was read, in words
    names: list[str]  # one per image read
    labels: np.ndarray  # (N,) true digits of the images read
    guesses: np.ndarray  # (N,) best guesses
    confidences: np.ndarray  # (N,) confidence of the best guess
    abstained: np.ndarray  # (N,) bool
    images28: np.ndarray = field(repr=False)  # (N, 28, 28) what the models saw
    groups: list[str] | None = None  # one per image read (a writer), when known
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, label)
    inference: str = ""
    threshold: float | None = None

    @property
    def right(self) -> np.ndarray:
        """(N,) bool: best guess equals the label."""
        return self.guesses == self.labels

    def summary(self, mask: np.ndarray | None = None) -> dict:
        """The risk numbers (of the images in `mask`, default all read): best-guess accuracy,
        abstention rate, accuracy when answered, accuracy at 90% and 95% coverage."""
        keep = np.ones(len(self.labels), bool) if mask is None else mask
        right, answered = self.right[keep], ~self.abstained[keep]
        confidence = self.confidences[keep]
        return {"n": int(keep.sum()), "best_guess_accuracy": _rate(right),
                "abstention_rate": _rate(~answered),
                "accuracy_when_answered": _rate(right[answered]),
                **{f"accuracy_at_{round(c * 100)}_coverage": coverage_accuracy(right, confidence, c)
                   for c in COVERAGES}}

    def per_class(self) -> dict[int, dict]:
        """The risk numbers per true digit, with precision (of the best guesses)."""
        out = {}
        for digit in range(10):
            numbers = self.summary(self.labels == digit)
            guessed = self.guesses == digit
            numbers["precision"] = _rate(self.right[guessed])
            out[digit] = numbers
        return out

    def worst_class(self) -> tuple[int, float] | None:
        """The digit with the lowest best-guess accuracy (among those present), and it."""
        scored = [(numbers["best_guess_accuracy"], digit)
                  for digit, numbers in self.per_class().items() if numbers["n"]]
        if not scored:
            return None
        accuracy, digit = min(scored)
        return digit, accuracy

    def confusion(self) -> np.ndarray:
        """(10, 10) counts: rows the true digit, columns the best guess."""
        matrix = np.zeros((10, 10), np.int64)
        np.add.at(matrix, (self.labels, self.guesses), 1)
        return matrix

    def confusions(self, top: int = TOP_CONFUSIONS) -> list[dict]:
        """The most frequent confusions: true, predicted, count and the indices of examples."""
        matrix = self.confusion()
        pairs = sorted(((int(matrix[t, p]), t, p) for t in range(10) for p in range(10)
                        if t != p and matrix[t, p]), key=lambda x: (-x[0], x[1], x[2]))
        return [{"true": t, "predicted": p, "count": count,
                 "examples": np.flatnonzero((self.labels == t) & (self.guesses == p)).tolist()}
                for count, t, p in pairs[:top]]

    def per_group(self) -> dict[str, dict]:
        """The risk numbers per group (writer), when the images have groups."""
        if self.groups is None:
            return {}
        groups = np.array(self.groups)
        return {g: self.summary(groups == g) for g in sorted(set(self.groups))}

    def to_json(self) -> dict:
        """JSON-ready dict: the summary, per class, the confusion matrix, the top confusions
        (with example names), per group, and what could not be read or was skipped."""
        worst = self.worst_class()
        return {"source": self.source, "inference": self.inference, "threshold": self.threshold,
                **self.summary(),
                "worst_class": {"digit": worst[0], "accuracy": worst[1]} if worst else None,
                "per_class": {str(d): v for d, v in self.per_class().items()},
                "confusion": self.confusion().tolist(),
                "confusions": [{**c, "examples": [self.names[i] for i in c["examples"][:EXAMPLES]]}
                               for c in self.confusions()],
                **({"per_group": self.per_group()} if self.groups is not None else {}),
                "unreadable": [{"file": n, "error": e} for n, e in self.unreadable],
                "skipped": [{"file": n, "label": label} for n, label in self.skipped]}


def assess(results: Sequence[Prediction | PredictionError], labels: Sequence[int],
           names: Sequence[str], source: str, recognizer: Recognizer | None = None,
           groups: Sequence[str] | None = None,
           skipped: Sequence[tuple[str, str]] = ()) -> LabelledEvaluation:
    """A LabelledEvaluation from predict_many's results on images with these labels and names
    (and groups); a PredictionError is listed as unreadable, not counted."""
    if not len(results) == len(labels) == len(names):
        raise ValueError("one label and one name per result")
    read = [k for k, r in enumerate(results) if r.ok]
    answers: list[Prediction] = [results[k] for k in read]  # the ok ones
    return LabelledEvaluation(
        source=source, names=[names[k] for k in read],
        labels=np.array([labels[k] for k in read], dtype=np.int64),
        guesses=np.array([a.best_guess for a in answers], dtype=np.int64),
        confidences=np.array([a.confidence for a in answers], dtype=np.float64),
        abstained=np.array([a.abstained for a in answers], dtype=bool),
        images28=(np.stack([a.image28 for a in answers]) if answers
                  else np.empty((0, 28, 28), np.uint8)),
        groups=[groups[k] for k in read] if groups is not None else None,
        unreadable=[(names[k], r.message) for k, r in enumerate(results) if not r.ok],
        skipped=list(skipped),
        inference=recognizer.inference if recognizer else "",
        threshold=recognizer.threshold if recognizer else None)


def _progress(n: int) -> bool:
    """Show progress bars: many images, and stderr is a terminal."""
    return n >= PROGRESS_MIN and sys.stderr.isatty()


def evaluate_folder(recognizer: Recognizer, directory: str | os.PathLike,
                    limit: int | None = None,
                    progress: bool | None = None) -> LabelledEvaluation:
    """The Recognizer on a folder of labelled images (digitrec.io.folder's layouts, any
    image type digitrec reads); labels that are not one digit are skipped; DataError when
    no single-digit label is left."""
    directory = Path(directory)
    items, skipped = [], []
    for item in read_folder(directory):
        name = item.path.relative_to(directory).as_posix()
        if len(item.label) == 1 and item.label.isdigit() and item.mode in (None, "digit"):
            items.append((item, name))
        else:
            skipped.append((name, item.label))
    if limit:
        items = items[:limit]
    if not items:
        raise DataError(f"{directory} holds no image labelled with a single digit "
                        f"(skipped {len(skipped)} labelled with numbers: not read yet)")
    show = _progress(len(items)) if progress is None else progress
    results = recognizer.predict_many([item.path for item, _ in items], progress=show)
    return assess(results, [int(item.label) for item, _ in items], [n for _, n in items],
                  f"folder {directory}", recognizer, skipped=skipped)


def _render_chunk(job: tuple[list[StrokeDigit], int, float | None, str]) -> list[bytes]:
    """PNG bytes of each digit of a chunk (what each worker process runs)."""
    import io
    digits, size, pen, style = job
    out = []
    for digit in digits:
        buffer = io.BytesIO()
        seed = int(digit.writer) * 100 + digit.label * 10 + digit.instance \
            if digit.writer.isdigit() else digit.label * 10 + digit.instance
        render_strokes(digit.strokes, size=size, pen=pen, style=style, seed=seed).save(
            buffer, format="PNG", compress_level=1)
        out.append(buffer.getvalue())
    return out


def render_pngs(digits: Sequence[StrokeDigit], size: int, pen: float | None, style: str,
                workers: int | None = None, progress: bool = False) -> list[bytes]:
    """Each digit rendered (digitrec.data.strokes) and encoded as PNG, as the page sends its
    pad, in `workers` processes (default: one per core for many digits); the seed of a scan
    comes from the writer, label and instance, so a rerun draws the same images."""
    from tqdm import tqdm

    from digitrec.preprocess.parallel import parallel_map, worker_count

    chunks = [(list(digits[i:i + 64]), size, pen, style) for i in range(0, len(digits), 64)]
    workers = worker_count(workers, len(digits))
    mapped = map(_render_chunk, chunks) if workers <= 1 else parallel_map(_render_chunk, chunks,
                                                                          workers)
    out: list[bytes] = []
    with tqdm(total=len(digits), desc="drawing", unit="img", disable=not progress,
              file=sys.stderr) as bar:
        for pngs in mapped:
            out += pngs
            bar.update(len(pngs))
    return out


def describe_rendering(size: int, pen: float | None, style: str) -> str:
    """The rendering in words: "the page's canvas, 280×280, pen 23 px"."""
    width = default_pen(style, size) if pen is None else pen
    what = "drawn as the page's canvas draws" if style == "canvas" else f"as a {style} scan"
    return f"{what}, {size}×{size}, pen {width:g} px"


def evaluate_strokes(recognizer: Recognizer, path: str | os.PathLike, size: int = 280,
                     pen: float | None = None, style: str = "canvas", limit: int | None = None,
                     progress: bool | None = None,
                     digits: Sequence[StrokeDigit] | None = None) -> LabelledEvaluation:
    """The Recognizer on a strokes file (DigiLeTs format), each digit drawn as `style` shows it
    (digitrec.data.strokes), sent as PNG bytes; groups are the writers. `digits`: already
    loaded from `path`."""
    digits = list(digits if digits is not None else load_strokes(path))[:limit or None]
    show = _progress(len(digits)) if progress is None else progress
    pngs = render_pngs(digits, size, pen, style, progress=show)
    results = recognizer.predict_many(pngs, progress=show)
    names = [f"writer {d.writer} {d.label}#{d.instance}" for d in digits]
    return assess(results, [d.label for d in digits], names,
                  f"strokes {path} ({describe_rendering(size, pen, style)})", recognizer,
                  groups=[d.writer for d in digits])


def _pct(value: float | None) -> str:
    """A rate as a percentage, or "-"."""
    return "-" if value is None else f"{value:.2%}"


def format_text(result: LabelledEvaluation) -> str:
    """Human-readable report: the numbers, per class, confusion matrix, top confusions, and
    what could not be read or was skipped."""
    s = result.summary()
    right = int(result.right.sum())
    worst = result.worst_class()
    lines = [f"{result.source}: {s['n']} images read ({result.inference})", "",
             f"best guess right            {_pct(s['best_guess_accuracy']):>7}  "
             f"({right} of {s['n']})",
             f"abstains on                 {_pct(s['abstention_rate']):>7}  (confidence under "
             f"{result.threshold:g}, or the models disagree)" if result.threshold is not None else
             f"abstains on                 {_pct(s['abstention_rate']):>7}",
             f"right when it answers       {_pct(s['accuracy_when_answered']):>7}",
             f"on the 90% it is surest of  {_pct(s['accuracy_at_90_coverage']):>7}",
             f"on the 95% it is surest of  {_pct(s['accuracy_at_95_coverage']):>7}",
             f"worst class                 {worst[0]} ({worst[1]:.2%})" if worst else "", ""]
    per_class = result.per_class()
    lines.append("per class           " + "".join(f"{d:>8}" for d in range(10)))
    for key, title in (("n", "images"), ("best_guess_accuracy", "best guess"),
                       ("abstention_rate", "abstains"), ("accuracy_when_answered", "answered ok"),
                       ("precision", "precision")):
        cells = (f"{per_class[d][key]:>8}" if key == "n" else
                 f"{_pct(per_class[d][key]):>8}" for d in range(10))
        lines.append(f"  {title:<18}" + "".join(cells))
    matrix = result.confusion()
    lines += ["", "confusion matrix (rows: true digit, columns: best guess)",
              "      " + "".join(f"{d:>6}" for d in range(10))]
    lines += [f"  {t:>2}  " + "".join(f"{matrix[t, p]:>6}" for p in range(10)) for t in range(10)]
    confusions = result.confusions()
    if confusions:
        lines += ["", "most frequent confusions (true → best guess):"]
        lines += [f"  {c['true']} → {c['predicted']}  {c['count']:>4}  e.g. "
                  + ", ".join(result.names[i] for i in c["examples"][:3]) for c in confusions]
    if result.unreadable:
        lines += ["", f"could not be read ({len(result.unreadable)}, not counted above):"]
        lines += [f"  {name}: {why}" for name, why in result.unreadable[:20]]
        lines += ["  …"] if len(result.unreadable) > 20 else []
    if result.skipped:
        lines += ["", f"skipped {len(result.skipped)} labelled with a number, not a digit "
                  "(numbers are not evaluated yet): "
                  + ", ".join(n for n, _ in result.skipped[:5])
                  + (" …" if len(result.skipped) > 5 else "")]
    return "\n".join(lines)


def write_report(result: LabelledEvaluation, out: str | os.PathLike) -> list[Path]:
    """Write confusion_matrix.png and confusions.png (the most frequent confusions, with
    example images as the models saw them) into `out`."""
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    matrix = result.confusion()
    s = result.summary()
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    shown = np.where(np.eye(10, dtype=bool), 0, matrix)  # colour the errors, not the diagonal
    image = ax.imshow(shown, cmap="Reds")
    for (t, p), count in np.ndenumerate(matrix):
        if count:
            ax.text(p, t, str(count), ha="center", va="center", fontsize=7,
                    color="tab:green" if t == p else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="best guess", ylabel="true digit",
           title=f"Confusion matrix, best guess right on {_pct(s['best_guess_accuracy'])}")
    fig.colorbar(image, ax=ax, label="errors")
    paths = [out / "confusion_matrix.png"]
    fig.savefig(paths[0], dpi=120)

    confusions = result.confusions()
    rows = max(1, len(confusions))
    fig = Figure(figsize=(EXAMPLES * 1.0 + 1.4, rows * 1.15 + 0.5), layout="constrained")
    axes = fig.subplots(rows, EXAMPLES, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, c in zip(axes, confusions, strict=False):
        row[0].set_title(f"{c['true']}→{c['predicted']} ×{c['count']}", fontsize=8, loc="left",
                         color="tab:red")
        for ax, index in zip(row, c["examples"][:EXAMPLES], strict=False):
            ax.imshow(result.images28[index], cmap="gray_r", vmin=0, vmax=255)
    fig.suptitle("Most frequent confusions (true→best guess), as the models saw them"
                 if confusions else "No confusions", fontsize=9)
    paths.append(out / "confusions.png")
    fig.savefig(paths[1], dpi=100)
    return paths
