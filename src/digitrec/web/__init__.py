"""The web app: `create_app(config)` builds the Flask app (page + JSON API) around a Recognizer."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from digitrec.config import read
from digitrec.errors import DigitrecError

DEFAULT_MAX_UPLOAD = 4 * 1024 * 1024  # bytes; over this the API answers 413
DRAIN_LIMITS = 4  # of a refused upload, up to this many times the limit is read and dropped
JSON_PREFIXES = ("/api", "/healthz")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; loads the Recognizer once (config WEIGHTS, else $DIGITREC_WEIGHTS, else
    the bundled ensemble; or pass a ready one as RECOGNIZER) on the backend INFERENCE, else
    $DIGITREC_INFERENCE, else the default (int8 when the weights carry int8.json). Concurrent
    requests share model batches unless MICRO_BATCH (or $DIGITREC_MICRO_BATCH=0) turns it off."""
    settings = read()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=DEFAULT_MAX_UPLOAD,
        WEIGHTS=str(settings.weights) if settings.weights else None,
        TORCH_THREADS=settings.torch_threads,
        MICRO_BATCH=settings.micro_batch,
        INFERENCE=settings.inference,
    )
    app.config.update(config or {})
    app.json.sort_keys = False
    if app.config["TORCH_THREADS"]:
        import torch
        torch.set_num_threads(int(app.config["TORCH_THREADS"]))
    recognizer = app.config.get("RECOGNIZER")
    if recognizer is None:
        from digitrec.recognizer import Recognizer
        recognizer = Recognizer.load(app.config["WEIGHTS"], backend=app.config["INFERENCE"],
                                     batching=app.config["MICRO_BATCH"])
    app.extensions["digitrec.recognizer"] = recognizer

    from digitrec.web.api import api
    from digitrec.web.feedback import feedback
    from digitrec.web.pages import pages
    app.register_blueprint(api)
    app.register_blueprint(feedback)
    app.register_blueprint(pages)
    app.register_error_handler(DigitrecError, _digitrec_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _digitrec_error(exc: DigitrecError):
    """A known error: its message as JSON `{"error": ...}` with its status (digitrec.errors)."""
    response = jsonify(error=str(exc) or type(exc).__name__)
    response.status_code = exc.http_status
    return response


def _wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def _http_error(exc: HTTPException):
    """HTTP errors as JSON `{"error": ...}` under /api; the usual HTML page elsewhere."""
    if not _wants_json():
        return exc
    message = exc.description or exc.name
    if exc.code == 413 and not getattr(exc, "custom", False):
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        length = request.content_length
        if length is not None and length <= limit:  # werkzeug's cap on multipart parts
            parts = current_app.config.get("MAX_FORM_PARTS") or 1000
            message = (f"the multipart form has too many parts: the limit is {parts} "
                       "(send one field, 'image')")
        else:
            message = f"the upload is too large: the limit is {limit / 1024 / 1024:.1f} MB"
        _drain_body(DRAIN_LIMITS * limit)
    response = jsonify(error=message)
    response.status_code = exc.code or 500
    if getattr(exc, "valid_methods", None):  # 405 says what is allowed
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _drain_body(most: int) -> None:
    """Read and drop the rest of a refused request's body, up to `most` bytes, so that a
    client that sends its whole body before reading the answer (Python's http.client, urllib)
    gets the answer instead of a broken pipe; a larger body is cut off."""
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    drained = 0
    try:
        while drained < most and (chunk := stream.read(min(65536, most - drained))):
            drained += len(chunk)
    except Exception:  # a broken connection or body: nothing more to save
        pass


def _unexpected_error(exc: Exception):
    """Any other exception: logged with its trace, answered 500 without one."""
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    if _wants_json():
        return jsonify(error="internal server error"), 500
    return InternalServerError()
