"""`digitrec feedback stats | export | import | purge`: export and import round trip, purge by
date, errors with their exit codes."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import weights_dir
from dbfixtures import *  # noqa: F403 (the fixtures)
from dbfixtures import ELEVEN, ONE, SEVEN
from PIL import Image

from digitrec.cli import main
from digitrec.feedback import FeedbackStore, capture


@pytest.fixture(autouse=True)
def _restore_db_env(monkeypatch):
    """--db sets $DIGITREC_DB_URL for the process: put it back after each test."""
    monkeypatch.setenv("DIGITREC_DB_URL", "sqlite:////nonexistent/not-used.sqlite3")


def _filled(url: str, recognizer) -> FeedbackStore:
    store = FeedbackStore.open(url)
    jpeg = Image.open(io.BytesIO(SEVEN)).convert("RGB")
    out = io.BytesIO()
    jpeg.save(out, format="JPEG")
    store.add(capture(recognizer, ONE, "7", source="page"), capture(recognizer, ELEVEN, "17"),
              capture(recognizer, out.getvalue(), "7"))
    return store


def test_export_then_import_round_trips(sqlite_url, pg_url, recognizer, tmp_path, capsys):
    source = _filled(sqlite_url, recognizer)
    folder = tmp_path / "export"
    assert main(["feedback", "export", str(folder), "--db", sqlite_url]) == 0
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == ["1_7.png", "2_17.png", "3_7.png"]
    assert (folder / "1_7.png").read_bytes() == ONE  # PNGs as received
    assert Image.open(folder / "3_7.png").format == "PNG"  # the JPEG re-encoded
    with open(folder / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["file"], r["label"], r["mode"]) for r in rows] == [
        ("1_7.png", "7", "digit"), ("2_17.png", "17", "number"), ("3_7.png", "7", "digit")]
    # into PostgreSQL, read again by the models
    assert main(["feedback", "import", str(folder), "--db", pg_url,
                 "--weights", str(weights_dir())]) == 0
    assert "stored 3 correction(s)" in capsys.readouterr().out
    copied = list(FeedbackStore.open(pg_url).all())
    originals = list(source.all())
    assert [(c.label, c.mode, c.predicted, c.source) for c in copied] == \
        [(c.label, c.mode, c.predicted, "cli") for c in originals]
    assert copied[0].image == ONE and copied[0].images28 == originals[0].images28
    assert copied[1].images28 == originals[1].images28


def test_import_reads_named_pngs_and_reports_bad_ones(sqlite_url, tmp_path, capsys):
    (tmp_path / "a_7.png").write_bytes(SEVEN)
    (tmp_path / "b_123.png").write_bytes(ELEVEN)  # 3 digits in the name, 2 in the image
    (tmp_path / "notes.txt").write_text("ignored")
    code = main(["feedback", "import", str(tmp_path), "--db", sqlite_url,
                 "--weights", str(weights_dir())])
    captured = capsys.readouterr()
    assert code == 3 and "stored 1 correction(s)" in captured.out and "skipped 1" in captured.out
    assert "b_123.png: skipped: the label '123' has 3 digits but 2 were found" in captured.err
    assert [c.label for c in FeedbackStore.open(sqlite_url).all()] == ["7"]


def test_stats_json(sqlite_url, recognizer, capsys):
    _filled(sqlite_url, recognizer)
    assert main(["feedback", "stats", "--json", "--db", sqlite_url]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["total"] == 3 and counts["by_label"] == {"7": 2, "17": 1}
    assert main(["feedback", "stats", "--db", sqlite_url]) == 0
    assert "3 correction(s)" in capsys.readouterr().out


def test_purge_before_a_date(sqlite_url, recognizer, capsys):
    store = _filled(sqlite_url, recognizer)
    old = capture(recognizer, ONE, "4")
    old.created = datetime.now(UTC) - timedelta(days=400)
    store.add(old)
    cutoff = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    assert main(["feedback", "purge", "--before", cutoff, "--db", sqlite_url]) == 0
    assert "deleted 1 correction(s)" in capsys.readouterr().out
    assert store.count() == 3
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert main(["feedback", "purge", "--before", tomorrow, "--db", sqlite_url]) == 0
    assert store.count() == 0


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["feedback", "purge", "--before", "last week"], 2, "expected a date"),
    (["feedback", "stats", "--db", "nonsense"], 2, "DIGITREC_DB_URL"),
    (["feedback", "stats", "--db", "postgresql+psycopg://x@127.0.0.1:1/x?connect_timeout=2"],
     1, "cannot migrate the corrections database"),
    (["feedback", "import", "/nonexistent/folder"], 2, "no folder"),
])
def test_errors_have_their_exit_codes(argv, code, words, sqlite_url, capsys):
    if "--db" not in argv:
        argv = [*argv, "--db", sqlite_url]
    assert main(argv) == code
    assert words in capsys.readouterr().err


def test_import_of_an_empty_folder_is_a_data_error(sqlite_url, tmp_path, capsys):
    assert main(["feedback", "import", str(tmp_path), "--db", sqlite_url]) == 2
    assert "no labels.csv and no PNG" in capsys.readouterr().err
