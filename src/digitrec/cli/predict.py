"""`digitrec predict FILE_OR_DIR...`: one line per file, in order, an error line for a file that
cannot be read (the others are still answered); exit status 3 when any could not be read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from digitrec.errors import EXIT_INPUT, DigitrecError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
PROGRESS_FROM = 50  # files; fewer get no progress bar


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given; directories walked for image files, in sorted order."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def prediction_line(file: str, prediction, as_json: bool) -> str:
    """One file's answer: `FILE: 7 (96.8%)`, `FILE: not sure (...)`, or one JSON object."""
    if as_json:
        return json.dumps({"file": file, "digit": prediction.digit,
                           "best_guess": prediction.best_guess,
                           "confidence": prediction.confidence,
                           "probabilities": prediction.probabilities,
                           "abstained": prediction.abstained, "reason": prediction.reason})
    if prediction.abstained:
        return (f"{file}: not sure ({prediction.reason}; best guess {prediction.best_guess} "
                f"at {prediction.confidence:.1%})")
    return f"{file}: {prediction.digit} ({prediction.confidence:.1%})"


def number_line(file: str, reading, as_json: bool) -> str:
    """One file's number: `FILE: 42 (94.6%)`, with "(not sure)" when any digit is unsure."""
    if as_json:
        return json.dumps({"file": file, "number": reading.number,
                           "best_guess": reading.best_guess, "confidence": reading.confidence,
                           "abstained": reading.abstained, "reason": reading.reason,
                           "reader": reading.reader,
                           "digits": [{"digit": d.digit, "best_guess": d.best_guess,
                                       "confidence": d.confidence,
                                       "probabilities": d.probabilities,
                                       "abstained": d.abstained, "box": [int(v) for v in box]}
                                      for d, box in zip(reading.digits, reading.boxes,
                                                        strict=True)]})
    flag = " (not sure)" if reading.abstained else ""
    return f"{file}: {reading.best_guess}{flag} ({reading.confidence:.1%})"


def error_line(file: str, message: str, as_json: bool) -> str:
    """One file that could not be read: `FILE: error: MESSAGE` or `{"file", "error"}`."""
    return (json.dumps({"file": file, "error": message}) if as_json
            else f"{file}: error: {message}")


def run(args: argparse.Namespace) -> int:
    """Read every file; exit status 3 if any could not be read, else 0."""
    from tqdm import tqdm

    from digitrec.recognizer import PredictionError, Recognizer

    recognizer = Recognizer.load(args.weights, backend=args.inference)
    files = expand_inputs(args.files)
    failed = 0
    show_bar = len(files) >= PROGRESS_FROM
    if args.number:
        for file in tqdm(files, disable=not show_bar, desc="reading", file=sys.stderr):
            try:
                print(number_line(str(file), recognizer.read_number(file), args.json), flush=True)
            except DigitrecError as exc:
                failed += 1
                print(error_line(str(file), str(exc), args.json), flush=True)
        return EXIT_INPUT if failed else 0

    sources = [str(file) for file in files]
    for file, result in zip(files, recognizer.predict_iter(sources, progress=show_bar),
                            strict=True):
        if isinstance(result, PredictionError):
            failed += 1
            print(error_line(str(file), result.message, args.json), flush=True)
        else:
            print(prediction_line(str(file), result, args.json), flush=True)
    return EXIT_INPUT if failed else 0

