"""The corrections database on a SQLite file and on a real PostgreSQL server: migrations (also
several processes at once), the round trip of a correction, undo, purge, stats, atomicity."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from dbfixtures import *  # noqa: F403 (the fixtures)
from dbfixtures import ELEVEN, ONE, SEVEN

from digitrec.errors import ConfigError, LabelMismatchError, StorageError
from digitrec.feedback import FeedbackStore, capture, database_url, images28_of, issue_undo_token
from digitrec.feedback.models import Base, Correction
from digitrec.feedback.store import migrate


def _row(label: str = "4", predicted: str | None = "9", created: datetime | None = None,
         model: str = "a" * 64) -> Correction:
    return Correction(source="api", mode="digit" if len(label) == 1 else "number", label=label,
                      predicted=predicted, probabilities=[[0.1] * 10] * len(label),
                      image=b"\x89PNG fake", images28=bytes(784 * len(label)),
                      model_version=model, created=created)


HEAD = "0002"  # the newest migration


def test_migrations_create_the_schema_the_orm_describes(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = FeedbackStore.open(db_url)
    FeedbackStore.open(db_url).close()  # a second open is a no-op
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == HEAD
        assert compare_metadata(context, Base.metadata) == []
        columns = {c["name"] for c in sa.inspect(connection).get_columns("corrections")}
    assert columns == {"id", "created", "source", "mode", "label", "predicted", "probabilities",
                       "image", "images28", "model_version", "undo_token"}
    store.close()


def test_several_processes_migrate_a_new_database_at_once(db_url):
    code = ("import sys; from digitrec.feedback import FeedbackStore; "
            "FeedbackStore.open(sys.argv[1]).count(); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err[-800:] for _, err in outs]
    store = FeedbackStore.open(db_url)
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).all() \
            == [(HEAD,)]
    store.close()


def test_a_database_of_the_first_revision_is_migrated_and_keeps_its_rows(db_url):
    """A database made before undo tokens (0001) opens migrated to HEAD; its rows stay, with no
    token (they cannot be undone through the API)."""
    from alembic import command
    from alembic.config import Config

    from digitrec.feedback.store import MIGRATIONS, create_db_engine
    engine = create_db_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO corrections (created, source, mode, label, predicted, probabilities, "
            "image, images28, model_version) VALUES (:created, 'api', 'digit', '4', '9', "
            "'[[0.1]]', :image, :images28, 'old')"),
            {"created": datetime(2026, 1, 1), "image": b"png", "images28": bytes(784)})
    engine.dispose()
    store = FeedbackStore.open(db_url)
    [row] = list(store.all())
    assert (row.label, row.model_version, row.undo_token) == ("4", "old", None)
    assert store.undo(row.id, "anything") == "refused"
    store.close()


def test_a_correction_round_trips(db_url, recognizer):
    store = FeedbackStore.open(db_url)
    before = datetime.now(UTC)
    one = capture(recognizer, ONE, "7", source="page")
    number = capture(recognizer, ELEVEN, "17")
    ids = store.add(one, number)
    assert len(set(ids)) == 2 and store.count() == 2
    got = store.get(ids[0])
    assert (got.label, got.mode, got.source, got.predicted) == ("7", "digit", "page", "1")
    assert got.image == ONE  # the bytes as received
    assert np.array_equal(images28_of(got)[0], recognizer.predict(ONE).image28)
    assert len(got.probabilities) == 1 and abs(sum(got.probabilities[0]) - 1) < 1e-3
    assert len(got.model_version) == 64 and int(got.model_version, 16)
    assert got.created.tzinfo is not None and before - timedelta(seconds=1) <= got.created \
        <= datetime.now(UTC) + timedelta(seconds=1)
    got = store.get(ids[1])
    assert (got.label, got.mode, got.predicted) == ("17", "number", "11")
    assert images28_of(got).shape == (2, 28, 28) and len(got.probabilities) == 2
    store.close()


def test_a_label_whose_digit_count_cannot_match_is_refused(recognizer):
    with pytest.raises(LabelMismatchError, match="2 were found"):
        capture(recognizer, ELEVEN, "111")


def test_a_transaction_stores_all_or_none(db_url):
    store = FeedbackStore.open(db_url)
    broken = _row()
    broken.images28 = bytes(783)  # the check constraint refuses a half image
    with pytest.raises(StorageError, match="ck_corrections_images28"):
        store.add(_row(), broken)
    assert store.count() == 0
    store.close()


def test_undo_within_the_window_only(db_url):
    store = FeedbackStore.open(db_url)
    rows = [_row(), _row(created=datetime.now(UTC) - timedelta(minutes=10))]
    tokens = [issue_undo_token(row) for row in rows]
    fresh, old = store.add(*rows)
    assert store.undo(old, tokens[1]) == "too late" and store.get(old) is not None
    assert store.undo(fresh, tokens[0]) == "deleted" and store.get(fresh) is None
    assert store.undo(fresh, tokens[0]) == "missing"
    store.close()


def test_undo_needs_the_corrections_own_token(db_url):
    store = FeedbackStore.open(db_url)
    mine, theirs, imported = _row(), _row(), _row()
    token, other = issue_undo_token(mine), issue_undo_token(theirs)
    first, _, third = store.add(mine, theirs, imported)
    assert store.get(first).undo_token != token  # only its digest is stored
    assert store.undo(first, other) == "refused" and store.get(first) is not None
    assert store.undo(third, token) == "refused"  # no token: not undoable through the API
    assert store.undo(first, token) == "deleted"
    store.close()


def test_purge_deletes_only_older_rows(db_url):
    store = FeedbackStore.open(db_url)
    now = datetime.now(UTC)
    old, new = store.add(_row(created=now - timedelta(days=40)), _row(created=now))
    assert store.purge(now - timedelta(days=30)) == 1
    assert store.get(old) is None and store.get(new) is not None
    store.close()


def test_stats_count_labels_models_and_confusions(db_url):
    store = FeedbackStore.open(db_url)
    store.add(_row("4", "9"), _row("4", "9"), _row("4", "4", model="b" * 64), _row("7", "1"),
              _row("12", None))
    counts = store.stats()
    assert counts["total"] == 5
    assert counts["by_label"] == {"4": 3, "12": 1, "7": 1}
    assert counts["by_model"] == {"a" * 64: 4, "b" * 64: 1}
    assert counts["confusions"] == [{"predicted": "9", "label": "4", "count": 2},
                                    {"predicted": "1", "label": "7", "count": 1}]
    store.close()


def test_sqlite_default_file_in_the_data_home_with_wal(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITREC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DIGITREC_DB_URL", raising=False)
    url = database_url()
    assert url == f"sqlite:///{tmp_path / 'home' / 'feedback.sqlite3'}"
    store = FeedbackStore.open()
    store.add(_row())
    assert (tmp_path / "home" / "feedback.sqlite3").exists()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    store.close()


def test_sqlite_writers_wait_for_each_other(sqlite_url):
    store, other = FeedbackStore.open(sqlite_url), FeedbackStore.open(sqlite_url)
    with other.engine.connect() as connection:
        transaction = connection.begin()  # holds the write lock (BEGIN IMMEDIATE)
        connection.execute(sa.insert(Correction.__table__).values(
            created=datetime.now(UTC), source="cli", mode="digit", label="1", predicted="1",
            probabilities=[[0.1] * 10], image=b"x", images28=bytes(784), model_version="c"))
        start = time.monotonic()
        import threading
        threading.Timer(0.5, transaction.commit).start()
        store.add(_row())  # waits for the other writer, then succeeds
        assert time.monotonic() - start >= 0.4
    assert store.count() == 2


@pytest.mark.parametrize("url", ["nonsense", "nosuchdialect://x/y"])
def test_a_bad_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="DIGITREC_DB_URL"):
        FeedbackStore.open(url)


def test_an_unreachable_server_is_a_storage_error():
    with pytest.raises(StorageError, match="cannot migrate"):
        FeedbackStore.open("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_migrate_is_idempotent_on_an_engine(sqlite_url):
    store = FeedbackStore.open(sqlite_url, migrate_schema=False)
    migrate(store.engine)
    migrate(store.engine)
    assert store.count() == 0
    store.close()


def test_seven_is_read_and_stored_as_seen(sqlite_url, recognizer):
    store = FeedbackStore.open(sqlite_url)
    [cid] = store.add(capture(recognizer, SEVEN, 7))  # an int label is taken as its digits
    got = store.get(cid)
    assert got.label == "7" and got.predicted == str(recognizer.predict(SEVEN).best_guess)
    store.close()
