"""Corrections as a folder: PNGs named `<id>_<label>.png` and a `labels.csv` (file, label, mode,
predicted, model_version, source, created), the layout of labelled image folders."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from digitrec.feedback.models import MODES, Correction
from digitrec.io.folder import LABELS_FILE, NAMED, LabelledImage
from digitrec.io.folder import read_folder as read_labelled_folder

__all__ = ["COLUMNS", "LABELS_FILE", "NAMED", "LabelledImage", "as_png", "export_folder",
           "read_folder"]

COLUMNS = ("file", "label", "mode", "predicted", "model_version", "source", "created")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    `file` and `label`, optionally `mode`), else every `*_<label>.png` (or `<label>.png`);
    digitrec.io.folder reads them."""
    return read_labelled_folder(directory, suffixes=(".png",), subfolders=False, modes=MODES)
