"""Undo tokens: the SHA-256 of a secret given to whoever stored a correction through the API, who
alone can undo it (before: anyone who guessed its id).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `undo_token` (NULL: the correction cannot be undone through the API)."""
    with op.batch_alter_table("corrections") as table:
        table.add_column(sa.Column("undo_token", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Drop `undo_token`."""
    with op.batch_alter_table("corrections") as table:
        table.drop_column("undo_token")
