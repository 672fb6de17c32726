"""How a Recognizer reads whole numbers on anyone's own labelled images: a folder (labels from
`*_<number>.<ext>` names, subfolders or labels.csv; digitrec.io.folder) of images that each hold
one number, read with `Recognizer.read_number` (`digitrec evaluate --folder DIR --number`).

Labels are strings of digits, leading zeros kept ("0042" is four digits). The numbers are the
ones users feel: exact match of the best guess, per-digit accuracy (1 − edit distance / the
label's length, at least 0), how often the length is right, how often it abstains (a number is
sure only when every digit is), exact match when it answers and on the 90% and 95% it is surest
of (NumberReading.confidence: every digit right, under independence), per length, and the worst
misreadings. An image that cannot be read (corrupt, blank, too many marks) is counted and listed,
not a crash."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitrec.errors import DataError, DigitrecError
from digitrec.evaluation.labelled import COVERAGES, PROGRESS_MIN, _pct, _rate, coverage_accuracy
from digitrec.io.folder import LABEL, read_folder
from digitrec.recognizer import NumberReading, Recognizer

WORST = 20  # worst cases listed in the JSON and the text
GALLERY = 24  # worst cases drawn in the report's gallery
GALLERY_COLUMNS = 4


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two digit strings."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1,
                                           previous + (ca != cb))
    return row[-1]


def digit_accuracy(label: str, read: str) -> float:
    """1 − edit distance / the label's length (at least 1), floored at 0."""
    return max(0.0, 1.0 - edit_distance(read, label) / max(len(label), 1))


@dataclass
class NumberEvaluation:
    """A Recognizer's readings of labelled numbers, and the numbers that describe them."""

    source: str  # what was read, in words
    names: list[str]  # one per image read
    paths: list[Path] = field(repr=False)  # one per image read (for the gallery)
    labels: list[str]  # true numbers, digit strings
    guesses: list[str]  # best guesses, digit strings
    confidences: np.ndarray  # (N,) NumberReading.confidence
    abstained: np.ndarray  # (N,) bool: some digit is uncertain
    reasons: list[str | None]  # why each reading abstains
    boxes: list[list[tuple[int, int, int, int]]] = field(repr=False)  # each digit's box
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, mode)
    inference: str = ""
    threshold: float | None = None

    @property
    def right(self) -> np.ndarray:
        """(N,) bool: the best guess is the label."""
        return np.array([g == t for g, t in zip(self.guesses, self.labels, strict=True)], bool)

    @property
    def per_digit(self) -> np.ndarray:
        """(N,) per-digit accuracy of each reading (digit_accuracy)."""
        return np.array([digit_accuracy(t, g) for g, t in zip(self.guesses, self.labels,
                                                               strict=True)], np.float64)

    @property
    def right_length(self) -> np.ndarray:
        """(N,) bool: as many digits read as the label has."""
        return np.array([len(g) == len(t) for g, t in zip(self.guesses, self.labels,
                                                           strict=True)], bool)

    def summary(self, mask: np.ndarray | None = None) -> dict:
        """The numbers (of the readings in `mask`, default all): exact match, per-digit
        accuracy, right length, abstention, exact match when answered and at 90%/95% coverage."""
        keep = np.ones(len(self.labels), bool) if mask is None else mask
        right, answered = self.right[keep], ~self.abstained[keep]
        per_digit = self.per_digit[keep]
        return {"n": int(keep.sum()), "exact_match": _rate(right),
                "per_digit_accuracy": float(per_digit.mean()) if len(per_digit) else None,
                "right_length_rate": _rate(self.right_length[keep]),
                "abstention_rate": _rate(~answered),
                "exact_match_when_answered": _rate(right[answered]),
                **{f"exact_match_at_{round(c * 100)}_coverage":
                   coverage_accuracy(right, self.confidences[keep], c) for c in COVERAGES}}

    def per_length(self) -> dict[int, dict]:
        """The numbers per label length (digits), shortest first."""
        lengths = np.array([len(t) for t in self.labels], np.int64)
        return {int(n): self.summary(lengths == n) for n in sorted(set(lengths.tolist()))}

    def worst(self, top: int = WORST) -> list[int]:
        """Indices of the wrong best guesses, worst first: fewest digits right, then the most
        confident (a sure misreading is worse than a doubtful one)."""
        wrong = np.flatnonzero(~self.right)
        per_digit = self.per_digit
        return sorted(wrong.tolist(), key=lambda k: (per_digit[k], -self.confidences[k],
                                                     self.names[k]))[:top]

    def case(self, k: int) -> dict:
        """One reading as a JSON-ready dict."""
        return {"file": self.names[k], "label": self.labels[k], "best_guess": self.guesses[k],
                "number": None if self.abstained[k] else self.guesses[k],
                "confidence": float(self.confidences[k]), "abstained": bool(self.abstained[k]),
                "reason": self.reasons[k], "per_digit_accuracy": float(self.per_digit[k])}

    def to_json(self) -> dict:
        """JSON-ready dict: the summary, per length, the worst cases, and what could not be
        read or was skipped."""
        return {"source": self.source, "mode": "number", "inference": self.inference,
                "threshold": self.threshold, **self.summary(),
                "unreadable_count": len(self.unreadable),
                "per_length": {str(n): v for n, v in self.per_length().items()},
                "worst_cases": [self.case(k) for k in self.worst()],
                "unreadable": [{"file": n, "error": e} for n, e in self.unreadable],
                "skipped": [{"file": n, "mode": m} for n, m in self.skipped]}


def assess_readings(readings: Sequence[NumberReading | str], labels: Sequence[str],
                    names: Sequence[str], paths: Sequence[Path], source: str,
                    recognizer: Recognizer | None = None,
                    skipped: Sequence[tuple[str, str]] = ()) -> NumberEvaluation:
    """A NumberEvaluation from read_number's readings (a string: why that image could not be
    read; listed as unreadable, not counted) of images with these labels, names and paths."""
    if not len(readings) == len(labels) == len(names) == len(paths):
        raise ValueError("one label, name and path per reading")
    read = [k for k, r in enumerate(readings) if isinstance(r, NumberReading)]
    ok: list[NumberReading] = [readings[k] for k in read]  # type: ignore[misc]
    return NumberEvaluation(
        source=source, names=[names[k] for k in read], paths=[Path(paths[k]) for k in read],
        labels=[labels[k] for k in read], guesses=[r.best_guess for r in ok],
        confidences=np.array([r.confidence for r in ok], np.float64),
        abstained=np.array([r.abstained for r in ok], bool),
        reasons=[r.reason for r in ok], boxes=[list(r.boxes) for r in ok],
        unreadable=[(names[k], r) for k, r in enumerate(readings) if isinstance(r, str)],
        skipped=list(skipped),
        inference=recognizer.inference if recognizer else "",
        threshold=recognizer.threshold if recognizer else None)


def read_or_reason(recognizer: Recognizer, path: Path) -> NumberReading | str:
    """`recognizer.read_number(path)`, or why it cannot be read (a DigitrecError's message;
    anything unexpected on hostile input named by its type), so that one bad image fails alone."""
    try:
        return recognizer.read_number(path)
    except DigitrecError as exc:
        return str(exc) or type(exc).__name__
    except Exception as exc:  # a decoder or numpy failure on hostile input
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        return f"the image could not be read ({type(exc).__name__}: {detail})"


def evaluate_numbers(recognizer: Recognizer, directory: str | os.PathLike,
                     limit: int | None = None,
                     progress: bool | None = None) -> NumberEvaluation:
    """The Recognizer's read_number on a folder of images labelled with numbers
    (digitrec.io.folder's layouts, any image type digitrec reads; labels.csv rows of mode
    "digit" are skipped); DataError naming the file of a label that is not a string of digits,
    or when no image is left."""
    from tqdm import tqdm

    directory = Path(directory)
    items, skipped = [], []
    for item in read_folder(directory):
        name = item.path.relative_to(directory).as_posix()
        if item.mode not in (None, "number"):
            skipped.append((name, item.mode))
        elif not LABEL.match(item.label):
            raise DataError(f"{directory}: the label {item.label!r} of {name} is not a number "
                            "(a string of the digits 0-9)")
        else:
            items.append((item, name))
    if limit:
        items = items[:limit]
    if not items:
        raise DataError(f"{directory} holds no image labelled with a number (skipped "
                        f"{len(skipped)} of another mode)")
    show = (len(items) >= PROGRESS_MIN and sys.stderr.isatty()) if progress is None else progress
    readings = [read_or_reason(recognizer, item.path)
                for item, _ in tqdm(items, desc="reading numbers", unit="img", disable=not show,
                                    file=sys.stderr)]
    return assess_readings(readings, [item.label for item, _ in items], [n for _, n in items],
                           [item.path for item, _ in items], f"folder {directory}", recognizer,
                           skipped=skipped)


def format_text(result: NumberEvaluation) -> str:
    """Human-readable report: the numbers, per length, the worst cases, and what could not be
    read or was skipped."""
    s = result.summary()
    right = int(result.right.sum())
    abstains = f"abstains on                 {_pct(s['abstention_rate']):>7}"
    if result.threshold is not None:
        abstains += (f"  (a digit's confidence under {result.threshold:g}, or the models "
                     "disagree)")
    lines = [f"{result.source}: {s['n']} numbers read ({result.inference})", "",
             f"exact match (best guess)    {_pct(s['exact_match']):>7}  ({right} of {s['n']})",
             f"per-digit accuracy          {_pct(s['per_digit_accuracy']):>7}  "
             "(1 − edit distance / length)",
             f"right length                {_pct(s['right_length_rate']):>7}",
             abstains,
             f"exact when it answers       {_pct(s['exact_match_when_answered']):>7}",
             f"on the 90% it is surest of  {_pct(s['exact_match_at_90_coverage']):>7}",
             f"on the 95% it is surest of  {_pct(s['exact_match_at_95_coverage']):>7}"]
    per_length = result.per_length()
    if per_length:
        lines += ["", "per length     numbers    exact  per digit  right length  abstains  "
                  "exact answered"]
    for length, n in per_length.items():
        lines.append(f"  {length:>2} digit{'s' if length != 1 else ' '}  {n['n']:>9}  "
                     f"{_pct(n['exact_match']):>7}  {_pct(n['per_digit_accuracy']):>9}  "
                     f"{_pct(n['right_length_rate']):>12}  {_pct(n['abstention_rate']):>8}  "
                     f"{_pct(n['exact_match_when_answered']):>14}")
    worst = result.worst()
    if worst:
        lines += ["", f"worst cases ({len(worst)} of {len(result.labels) - right} wrong; "
                  "label → best guess):"]
        for k in worst:
            note = f", abstains: {result.reasons[k]}" if result.abstained[k] else ""
            lines.append(f"  {result.names[k]}: {result.labels[k]} → {result.guesses[k]} "
                         f"({result.confidences[k]:.1%}{note})")
    if result.unreadable:
        lines += ["", f"could not be read ({len(result.unreadable)}, not counted above):"]
        lines += [f"  {name}: {why}" for name, why in result.unreadable[:20]]
        lines += ["  …"] if len(result.unreadable) > 20 else []
    if result.skipped:
        lines += ["", f"skipped {len(result.skipped)} of another mode (labels.csv): "
                  + ", ".join(n for n, _ in result.skipped[:5])
                  + (" …" if len(result.skipped) > 5 else "")]
    return "\n".join(lines)


def write_report(result: NumberEvaluation, out: str | os.PathLike) -> list[Path]:
    """Write number_errors.png into `out`: the worst misread numbers, each image with its
    label, what was read and the boxes of the digits found."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from digitrec.io import load_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    worst = result.worst(GALLERY)
    columns = max(1, min(GALLERY_COLUMNS, len(worst)))
    rows = max(1, -(-len(worst) // columns))
    fig = Figure(figsize=(max(6.4, columns * 3.2), rows * 1.7 + 0.5), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, worst, strict=False):
        try:
            image = np.asarray(load_image(result.paths[k]).convert("L"))
        except DigitrecError:  # changed on disk since it was read
            continue
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        for x0, y0, x1, y1 in result.boxes[k]:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.8,
                                   edgecolor="tab:blue"))
        unsure = " (abstains)" if result.abstained[k] else ""
        ax.set_title(f"{result.names[k]}\nlabel {result.labels[k]} → read {result.guesses[k]} "
                     f"({result.confidences[k]:.0%}){unsure}", fontsize=7, color="tab:red")
    s = result.summary()
    fig.suptitle(f"Worst misread numbers (label → best guess, confidence); exact match "
                 f"{_pct(s['exact_match'])}" if worst else "No misread numbers", fontsize=9)
    path = out / "number_errors.png"
    fig.savefig(path, dpi=100)
    return [path]
