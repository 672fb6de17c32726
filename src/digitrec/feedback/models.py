"""The tables of the corrections database (SQLAlchemy 2 typed ORM). The schema itself is made
by the Alembic migrations in `migrations/versions`; a test keeps the two equal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, LargeBinary, String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

IMAGE28_BYTES = 28 * 28  # one 28x28 uint8 image, row-major
SOURCES = ("page", "api", "cli")
MODES = ("digit", "number")
MAX_LABEL = 64  # digits in a number's label


class UTCDateTime(TypeDecorator[datetime]):
    """A time stored as naive UTC (the same in SQLite and PostgreSQL), read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware → naive UTC (naive values are taken as UTC already)."""
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Naive UTC → aware UTC."""
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    """The declarative base of digitrec's tables."""


class Correction(Base):
    """One correction: an image as received, what the model saw and read, and the right label.
    No IP address or other personal data."""

    __tablename__ = "corrections"
    __table_args__ = (
        CheckConstraint("source IN ('page', 'api', 'cli')", name="ck_corrections_source"),
        CheckConstraint("mode IN ('digit', 'number')", name="ck_corrections_mode"),
        CheckConstraint(f"length(images28) = {IMAGE28_BYTES} * length(label)",
                        name="ck_corrections_images28"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    source: Mapped[str] = mapped_column(String(8))
    mode: Mapped[str] = mapped_column(String(8))
    label: Mapped[str] = mapped_column(String(MAX_LABEL))
    predicted: Mapped[str | None] = mapped_column(String(MAX_LABEL))
    probabilities: Mapped[list[list[float]]] = mapped_column(JSON)  # per digit, 10 each
    image: Mapped[bytes] = mapped_column(LargeBinary)  # the bytes as received
    images28: Mapped[bytes] = mapped_column(LargeBinary)  # per digit, 784 bytes each
    model_version: Mapped[str] = mapped_column(String(64), index=True)  # weights SHA-256
    undo_token: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the undo secret

    def to_json(self) -> dict[str, Any]:
        """The row without its images, JSON-ready."""
        return {"id": self.id, "created": self.created.isoformat(), "source": self.source,
                "mode": self.mode, "label": self.label, "predicted": self.predicted,
                "model_version": self.model_version}
