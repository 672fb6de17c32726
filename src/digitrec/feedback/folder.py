"""Corrections as a folder: PNGs named `<id>_<label>.png` and a `labels.csv` (file, label, mode,
predicted, model_version, source, created), the layout of labelled image folders."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from digitrec.errors import DataError
from digitrec.feedback.models import MODES, Correction

LABELS_FILE = "labels.csv"
COLUMNS = ("file", "label", "mode", "predicted", "model_version", "source", "created")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMED = re.compile(r"^(?:.*_)?(?P<label>[0-9]+)\.png$", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class LabelledImage:
    """An image file of a folder and its label (mode None: by the label's length)."""

    path: Path
    label: str
    mode: str | None = None


def as_png(data: bytes) -> bytes:
    """The image as PNG: PNG bytes as they are, anything else decoded (upright) and re-encoded."""
    if data.startswith(PNG_MAGIC):
        return data
    from digitrec.io import load_image
    out = io.BytesIO()
    load_image(data).save(out, format="PNG")
    return out.getvalue()


def export_folder(corrections: Iterable[Correction], directory: Path) -> int:
    """Write each correction as `<id>_<label>.png` and all of them to labels.csv; how many."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in corrections:
        name = f"{c.id}_{c.label}.png"
        (directory / name).write_bytes(as_png(c.image))
        rows.append({"file": name, "label": c.label, "mode": c.mode,
                     "predicted": c.predicted or "", "model_version": c.model_version,
                     "source": c.source, "created": c.created.isoformat()})
    partial = directory / f".{LABELS_FILE}.partial"
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, directory / LABELS_FILE)
    return len(rows)


def read_folder(directory: Path) -> list[LabelledImage]:
    """The labelled images of a folder: the rows of its labels.csv when it has one (columns
    `file` and `label`, optionally `mode`), else every `*_<label>.png` (or `<label>.png`)."""
    if not directory.is_dir():
        raise DataError(f"no folder {directory}")
    table = directory / LABELS_FILE
    if not table.exists():
        found = [LabelledImage(path, match["label"]) for path in sorted(directory.iterdir())
                 if (match := NAMED.match(path.name)) and path.is_file()]
        if not found:
            raise DataError(f"{directory} holds no {LABELS_FILE} and no PNG named "
                            "*_<label>.png")
        return found
    out = []
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{table}: the first line must name the columns file and label")
        for line, row in enumerate(reader, start=2):
            name, label = (row.get("file") or "").strip(), (row.get("label") or "").strip()
            mode = (row.get("mode") or "").strip() or None
            path = directory / name
            if not name or Path(name).name != name or not path.is_file():
                raise DataError(f"{table}, line {line}: no image file {name!r} in {directory}")
            if mode is not None and mode not in MODES:
                raise DataError(f"{table}, line {line}: mode {mode!r} is not one of "
                                f"{', '.join(MODES)}")
            out.append(LabelledImage(path, label, mode))
    return out
