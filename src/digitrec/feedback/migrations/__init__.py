"""Alembic migrations of the corrections database (run by digitrec.feedback.store.migrate)."""
