"""The table of corrections.

Revision ID: 0001
Revises:
Create Date: 2026-05-20"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create `corrections` and its indexes."""
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("predicted", sa.String(length=64), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("images28", sa.LargeBinary(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.CheckConstraint("source IN ('page', 'api', 'cli')", name="ck_corrections_source"),
        sa.CheckConstraint("mode IN ('digit', 'number')", name="ck_corrections_mode"),
        sa.CheckConstraint("length(images28) = 784 * length(label)",
                           name="ck_corrections_images28"),
        sa.PrimaryKeyConstraint("id", name="pk_corrections"),
    )
    op.create_index("ix_corrections_created", "corrections", ["created"])
    op.create_index("ix_corrections_model_version", "corrections", ["model_version"])


def downgrade() -> None:
    """Drop `corrections`."""
    op.drop_index("ix_corrections_model_version", table_name="corrections")
    op.drop_index("ix_corrections_created", table_name="corrections")
    op.drop_table("corrections")
