"""Corrections: "it was a 4" stored in a real database (SQLAlchemy 2, Alembic migrations;
SQLite by default, PostgreSQL when several app instances share it).

`capture` checks a label and records what the model saw and read; `FeedbackStore` stores,
undoes, counts and purges; `export_folder` / `read_folder` map corrections to a folder of PNGs."""

from digitrec.feedback.capture import capture, check_label, images28_of, model_version
from digitrec.feedback.folder import LabelledImage, export_folder, read_folder
from digitrec.feedback.models import Correction
from digitrec.feedback.store import (
    UNDO_SECONDS,
    FeedbackStore,
    database_url,
    issue_undo_token,
    shared_store,
)

__all__ = ["UNDO_SECONDS", "Correction", "FeedbackStore", "LabelledImage", "capture",
           "issue_undo_token",
           "check_label", "database_url", "export_folder", "images28_of", "model_version",
           "read_folder", "shared_store"]
