"""Corrections API: POST /api/feedback, GET /api/feedback/stats, DELETE /api/feedback/<id>
(the page's undo). The database is opened, and migrated, on first use in each worker: config
DB_URL, else $DIGITREC_DB_URL, else the SQLite file in the data home."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from digitrec.feedback import UNDO_SECONDS, FeedbackStore, capture, issue_undo_token, shared_store
from digitrec.feedback.capture import DIGITS
from digitrec.web.api import ApiError, read_image

feedback = Blueprint("feedback", __name__)
FIELDS = ("label", "predicted", "mode", "source")
WEB_SOURCES = ("page", "api")


def store() -> FeedbackStore:
    """The app's store of corrections (opened and migrated on first use in this process)."""
    return shared_store(current_app.config.get("DB_URL"))


def _fields() -> dict[str, Any]:
    """label, predicted, mode, source: form fields (multipart), JSON members, or the query
    string (an image/* body)."""
    if request.mimetype == "multipart/form-data":
        values: dict[str, Any] = {k: request.form.get(k) for k in FIELDS}
    elif request.is_json:
        body = request.get_json(silent=True)
        values = {k: body.get(k) for k in FIELDS} if isinstance(body, dict) else {}
    else:
        values = {}
    for key in FIELDS:
        if values.get(key) is None and key in request.args:
            values[key] = request.args.get(key)
    for key in ("predicted", "mode", "source"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise ApiError(400, f"{key!r} must be a string")
    return values


@feedback.post("/api/feedback")
def post_feedback():
    """Store a correction: the image as /api/predict takes it and its right `label`."""
    fields = _fields()
    data = read_image()
    source = fields.get("source") or "api"
    if source not in WEB_SOURCES:
        raise ApiError(400, f"source {source[:20]!r} is not one of {', '.join(WEB_SOURCES)}")
    predicted = fields.get("predicted")  # what the page showed: checked, not stored (below)
    if predicted and not DIGITS.fullmatch(predicted):
        raise ApiError(400, f"'predicted' {predicted[:20]!r} is not a string of digits")
    correction = capture(current_app.extensions["digitrec.recognizer"], data, fields.get("label"),
                         fields.get("mode") or None, source,
                         max_bytes=current_app.config.get("MAX_CONTENT_LENGTH") or len(data))
    # stored as `predicted`: what this model reads, in step with the probabilities and images28
    undo_token = issue_undo_token(correction)
    [correction_id] = store().add(correction)
    response = jsonify({**correction.to_json(), "undo_seconds": UNDO_SECONDS,
                        "undo_token": undo_token})
    response.status_code = 201
    response.headers["Location"] = f"/api/feedback/{correction_id}"
    return response


@feedback.get("/api/feedback/stats")
def feedback_stats():
    """Counts of the stored corrections."""
    return jsonify(store().stats())


@feedback.delete("/api/feedback/<int:correction_id>")
def undo_feedback(correction_id: int):
    """Undo a correction stored in the last few minutes (the page's Undo); only with the undo
    token its POST answered (header X-Undo-Token, or `undo_token` in a JSON body)."""
    token = request.headers.get("X-Undo-Token")
    if token is None and request.is_json:
        body = request.get_json(silent=True)
        token = body.get("undo_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ApiError(400, "undoing a correction needs its undo token (the X-Undo-Token "
                            "header, or undo_token in a JSON body), as POST /api/feedback "
                            "answered it")
    result = store().undo(correction_id, token)
    if result == "missing":
        raise ApiError(404, f"no correction {correction_id}")
    if result == "refused":
        raise ApiError(403, f"that is not the undo token of correction {correction_id}")
    if result == "too late":
        raise ApiError(409, f"correction {correction_id} is older than {UNDO_SECONDS} s: it can "
                            "no longer be undone")
    return jsonify(deleted=correction_id)
