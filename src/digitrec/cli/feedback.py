"""`digitrec feedback stats | export DIR | import DIR | purge --before DATE`: the corrections
database from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from digitrec.errors import DigitrecError, UsageError


def _store(args: argparse.Namespace):
    from digitrec.feedback import FeedbackStore
    return FeedbackStore.open(args.db)


def stats(args: argparse.Namespace) -> int:
    """Print counts of the corrections (JSON with --json)."""
    store = _store(args)
    counts = store.stats()
    if args.json:
        print(json.dumps(counts))
        return 0
    print(f"{counts['total']} correction(s) in {store.url}")
    if counts["by_label"]:
        print("by label:  " + ", ".join(f"{k}: {n}" for k, n in sorted(counts["by_label"].items())))
        print("by source: " + ", ".join(f"{k}: {n}" for k, n in counts["by_source"].items()))
        for version, n in counts["by_model"].items():
            print(f"model {version[:12]}: {n}")
    for pair in counts["confusions"][:20]:
        print(f"read {pair['predicted']} for {pair['label']}: {pair['count']}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Write every correction as <id>_<label>.png plus labels.csv into DIR."""
    from digitrec.feedback import export_folder
    store = _store(args)
    written = export_folder(store.all(), Path(args.dir))
    print(f"wrote {written} image(s) and labels.csv to {args.dir}")
    return 0


def import_folder(args: argparse.Namespace) -> int:
    """Store each labelled image of DIR as a correction (source cli), read by the models:
    exit 3 when any image could not be stored (the others are)."""
    from digitrec.cli.models import weights_dir
    from digitrec.feedback import capture, read_folder
    from digitrec.recognizer import Recognizer

    items = read_folder(Path(args.dir))  # a bad folder fails before anything loads
    store = _store(args)
    recognizer = Recognizer.load(weights_dir(args), backend=args.inference)
    corrections, failed = [], 0
    for item in items:
        try:
            corrections.append(capture(recognizer, item.path.read_bytes(), item.label,
                                       item.mode, source="cli"))
        except (DigitrecError, OSError) as exc:
            failed += 1
            print(f"{item.path}: skipped: {exc}", file=sys.stderr)
    ids = store.add(*corrections) if corrections else []
    print(f"stored {len(ids)} correction(s) from {args.dir}"
          + (f"; skipped {failed}" if failed else ""))
    return 3 if failed else 0


def parse_when(text: str) -> datetime:
    """A date (midnight UTC) or an ISO date-time (UTC when it names no zone)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--before {text!r}: expected a date like 2026-01-31 or a time like "
                         "2026-01-31T12:00") from None
    if len(text) <= 10:  # a bare date
        when = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def purge(args: argparse.Namespace) -> int:
    """Delete the corrections stored before --before."""
    before = parse_when(args.before)
    removed = _store(args).purge(before)
    print(f"deleted {removed} correction(s) stored before {before.isoformat()}")
    return 0
