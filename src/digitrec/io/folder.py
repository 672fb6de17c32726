"""Folders of labelled images, the layout people keep their own digits in: a `labels.csv`
(columns `file` and `label`, optionally `mode`), else image files named `*_<label>.<ext>` (or
`<label>.<ext>`), and (when asked) subfolders named by the label. Read by `digitrec evaluate
--folder` and, PNGs only, by the corrections' import (digitrec.feedback.folder)."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from digitrec.errors import DataError

LABELS_FILE = "labels.csv"
# The formats digitrec.io decodes (PNG, JPEG, GIF, BMP, WebP, TIFF), by file suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
NAMED = re.compile(r"^(?:.*_)?(?P<label>[0-9]+)\.png$", re.ASCII | re.IGNORECASE)
LABEL = re.compile(r"^[0-9]+$", re.ASCII)


@dataclass(frozen=True)
class LabelledImage:
    """An image file of a folder and its label (mode None: by the label's length)."""

    path: Path
    label: str
    mode: str | None = None


def _named(suffixes: Iterable[str]) -> re.Pattern[str]:
    """The pattern of `*_<label>.<suffix>` file names for these suffixes."""
    alternatives = "|".join(re.escape(s.lstrip(".")) for s in suffixes)
    return re.compile(rf"^(?:.*_)?(?P<label>[0-9]+)\.(?:{alternatives})$",
                      re.ASCII | re.IGNORECASE)


def _is_image(path: Path, suffixes: tuple[str, ...]) -> bool:
    """A visible file with one of `suffixes`."""
    return (path.suffix.lower() in suffixes and not path.name.startswith(".")
            and path.is_file())


def read_labels_csv(directory: Path, modes: Iterable[str] | None = None,
                    nested: bool = False) -> list[LabelledImage]:
    """The rows of `directory`/labels.csv as labelled images; DataError naming the line of a
    missing file or (when `modes` is given) an unknown mode. `nested`: a row may name a file
    in a subfolder (a relative path that stays inside `directory`)."""
    table = directory / LABELS_FILE
    modes = tuple(modes) if modes is not None else None
    out = []
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{table}: the first line must name the columns file and label")
        for line, row in enumerate(reader, start=2):
            name, label = (row.get("file") or "").strip(), (row.get("label") or "").strip()
            mode = (row.get("mode") or "").strip() or None
            path = directory / name
            inside = (Path(name).name == name if not nested else
                      not Path(name).is_absolute() and ".." not in Path(name).parts)
            if not name or not inside or not path.is_file():
                raise DataError(f"{table}, line {line}: no image file {name!r} in {directory}")
            if modes is not None and mode is not None and mode not in modes:
                raise DataError(f"{table}, line {line}: mode {mode!r} is not one of "
                                f"{', '.join(modes)}")
            out.append(LabelledImage(path, label, mode))
    return out


def read_folder(directory: str | os.PathLike, suffixes: Iterable[str] = IMAGE_SUFFIXES,
                subfolders: bool = True,
                modes: Iterable[str] | None = None) -> list[LabelledImage]:
    """The labelled images of a folder: the rows of its labels.csv when it has one, else every
    image named `*_<label>.<ext>` in it and (`subfolders`) every image in a subfolder named by
    a label (`3/`, `42/`), sorted by path. `suffixes`: the image files considered. DataError
    when there is no such folder or nothing labelled in it."""
    directory = Path(directory)
    suffixes = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    if not directory.is_dir():
        raise DataError(f"no folder {directory}")
    if (directory / LABELS_FILE).exists():
        return read_labels_csv(directory, modes, nested=subfolders)
    named = _named(suffixes)
    found = [LabelledImage(path, match["label"]) for path in sorted(directory.iterdir())
             if (match := named.match(path.name)) and _is_image(path, suffixes)]
    if subfolders:
        for folder in sorted(p for p in directory.iterdir() if p.is_dir() and LABEL.match(p.name)):
            found += [LabelledImage(path, folder.name) for path in sorted(folder.rglob("*"))
                      if _is_image(path, suffixes)]
    if not found:
        png = suffixes == (".png",)
        what, names = ("PNG", "*_<label>.png") if png else ("image", "*_<label>.<ext>")
        where = (f"no {LABELS_FILE}, no {what} named {names} and no subfolder of images named "
                 "by a label" if subfolders else f"no {LABELS_FILE} and no {what} named {names}")
        raise DataError(f"{directory} holds {where}")
    return sorted(found, key=lambda item: item.path)
