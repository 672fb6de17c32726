"""The database of corrections: `FeedbackStore.open(url)` connects (SQLite by default, a file in
the data home; PostgreSQL through psycopg) and migrates the schema to the newest revision, one
process at a time; then add, undo, stats, purge and iterate."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from digitrec.errors import ConfigError, StorageError
from digitrec.feedback.models import Correction

DEFAULT_FILE = "feedback.sqlite3"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 30_000  # a writer waits this long for another one before giving up
UNDO_SECONDS = 300  # a correction can be undone (DELETE) this long after it was stored

UndoResult = Literal["deleted", "missing", "refused", "too late"]


def issue_undo_token(correction: Correction) -> str:
    """A new secret that lets its holder undo `correction` (stored as its SHA-256 only)."""
    token = secrets.token_urlsafe(24)
    correction.undo_token = token_digest(token)
    return token


def token_digest(token: str) -> str:
    """The SHA-256 (hex) of an undo token, as stored."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _aware(moment: datetime) -> datetime:
    """A datetime read back from the database as aware UTC (naive ones are UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def database_url(url: str | None = None) -> str:
    """`url`, else $DIGITREC_DB_URL, else the SQLite file feedback.sqlite3 in the data home."""
    if url:
        return url
    from digitrec.config import read
    settings = read()
    return settings.db_url or f"sqlite:///{settings.data_home() / DEFAULT_FILE}"


def shown(url: str | URL) -> str:
    """The URL with its password hidden (for messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Each new SQLite connection: transactions begun by us (see _begin_immediate), a busy
    timeout, WAL journal (readers never wait for the writer)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    """SQLite: take the write lock when a transaction begins, so that concurrent writers wait
    (busy timeout) instead of failing when a read would be upgraded to a write."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str) -> Engine:
    """An engine for `url`; ConfigError for a URL that names no usable database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"--db / $DIGITREC_DB_URL: {url!r} is not a database URL "
                          "(sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE)") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=not sqlite,
                               connect_args={"timeout": SQLITE_BUSY_MS / 1000} if sqlite else {})
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise ConfigError(f"--db / $DIGITREC_DB_URL: cannot use {shown(url)}: {exc}") from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there). Safe when several
    processes start at once: they migrate one after the other (see migrations/env.py)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class FeedbackStore:
    """The corrections in one database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None, migrate_schema: bool = True) -> FeedbackStore:
        """Connect to `url` (default: database_url()) and migrate it; ConfigError for a bad
        URL, StorageError when the database cannot be reached."""
        engine = create_db_engine(database_url(url))
        store = cls(engine)
        if migrate_schema:
            with store._errors("migrate"):
                migrate(engine)
        return store

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def _errors(self, doing: str) -> _StorageErrors:
        return _StorageErrors(f"cannot {doing} the corrections database {self.url}")

    def _session(self) -> Session:
        return self._sessions()

    def add(self, *corrections: Correction) -> list[int]:
        """Store corrections in one transaction (all or none); their ids."""
        now = datetime.now(UTC)
        for correction in corrections:
            if correction.created is None:
                correction.created = now
        with self._errors("write to"), self._session() as session, session.begin():
            session.add_all(corrections)
            session.flush()
            return [c.id for c in corrections]

    def get(self, correction_id: int) -> Correction | None:
        """One correction, or None."""
        with self._errors("read"), self._session() as session:
            return session.get(Correction, correction_id)

    def count(self) -> int:
        """How many corrections there are."""
        with self._errors("read"), self._session() as session:
            return session.scalar(select(func.count()).select_from(Correction)) or 0

    def all(self, batch: int = 200) -> Iterator[Correction]:
        """Every correction, oldest first (read in batches)."""
        with self._errors("read"), self._session() as session:
            query = select(Correction).order_by(Correction.id).execution_options(
                yield_per=batch)
            yield from session.scalars(query)

    def undo(self, correction_id: int, token: str, within: float = UNDO_SECONDS) -> UndoResult:
        """Delete a correction stored less than `within` seconds ago by whoever holds its undo
        `token` (issue_undo_token): "deleted", "missing" (no such id), "refused" (not its
        token, or it has none) or "too late" (older; kept)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=within)
        with self._errors("write to"), self._session() as session, session.begin():
            row = session.execute(select(Correction.created, Correction.undo_token).where(
                Correction.id == correction_id)).first()
            if row is None:
                return "missing"
            if row.undo_token is None or not hmac.compare_digest(row.undo_token,
                                                                 token_digest(token)):
                return "refused"
            if _aware(row.created) < cutoff:
                return "too late"
            session.execute(delete(Correction).where(Correction.id == correction_id))
            return "deleted"

    def purge(self, before: datetime) -> int:
        """Delete the corrections stored before `before` (aware, or naive UTC); how many."""
        with self._errors("write to"), self._session() as session, session.begin():
            return session.execute(delete(Correction).where(
                Correction.created < before)).rowcount

    def stats(self) -> dict[str, Any]:
        """Counts: in all, by label, by model version, by source, and the confusions
        (predicted → label, where they differ), most frequent first."""
        with self._errors("read"), self._session() as session:
            def counts(column: Any) -> dict[str, int]:
                rows = session.execute(select(column, func.count()).group_by(column)
                                       .order_by(func.count().desc(), column))
                return {str(key): n for key, n in rows}

            pairs = session.execute(
                select(Correction.predicted, Correction.label, func.count())
                .where(Correction.predicted.is_not(None), Correction.predicted != Correction.label)
                .group_by(Correction.predicted, Correction.label)
                .order_by(func.count().desc(), Correction.predicted, Correction.label))
            by_label = counts(Correction.label)
            return {"total": sum(by_label.values()), "by_label": by_label,
                    "by_model": counts(Correction.model_version),
                    "by_source": counts(Correction.source),
                    "confusions": [{"predicted": p, "label": t, "count": n}
                                   for p, t, n in pairs]}


class _StorageErrors:
    """Turns a database failure into a StorageError with the given message."""

    def __init__(self, message: str):
        self.message = message

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, _tb: Any) -> bool:
        if isinstance(exc, SQLAlchemyError):
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise StorageError(f"{self.message}: {detail[0] if detail else type(exc).__name__}"
                               ) from exc
        return False


_OPEN: dict[str, FeedbackStore] = {}
_OPEN_LOCK = threading.Lock()


def shared_store(url: str | None = None) -> FeedbackStore:
    """One migrated store per URL in this process (the web app's workers each open their own
    on first use)."""
    url = database_url(url)
    with _OPEN_LOCK:
        store = _OPEN.get(url)
        if store is None:
            store = _OPEN[url] = FeedbackStore.open(url)
        return store
