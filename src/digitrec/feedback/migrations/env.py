"""Alembic's environment: migrate the connection that digitrec.feedback.store.migrate hands
over, holding a lock so that several workers starting at once migrate one after the other
(PostgreSQL: an advisory lock for the transaction; SQLite: BEGIN IMMEDIATE, see store.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from digitrec.feedback.models import Base

LOCK_KEY = 0x64696769  # "digi": the advisory lock of digitrec's migrations


def run() -> None:
    """Run the migrations online, on the connection given in config.attributes."""
    connection = context.config.attributes.get("connection")
    if connection is None or context.is_offline_mode():
        raise RuntimeError("digitrec's migrations run through digitrec.feedback.store.migrate")
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        context.run_migrations()


run()
