"""JSON API: /api/predict, /api/read-number, /api/models, /api/openapi.json and /healthz."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from digitrec.web.openapi import spec

try:  # what gunicorn raises, mid-request, for a body it cannot parse
    from gunicorn.http.errors import ParseException
    BODY_ERRORS: tuple[type[Exception], ...] = (OSError, ParseException)
except ImportError:  # another WSGI server
    BODY_ERRORS = (OSError,)

api = Blueprint("api", __name__)

# Leading bytes of common files that are certainly not images: answered 415, not 400.
NON_IMAGE_MAGIC = {
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (or office document)",
    b"\x1f\x8b": "a gzip file",
    b"\x7fELF": "an executable",
    b"<?xml": "an XML document",
    b"<svg": "an SVG drawing (not supported: send PNG, JPEG, GIF, BMP or WebP)",
    b"<!doctype": "an HTML document",
    b"<html": "an HTML document",
    b"{": "JSON text",
}
DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?),(?P<data>.*)$",
                      re.DOTALL)


class ApiError(HTTPException):
    """An error answered as JSON `{"error": description}` with the given status."""

    custom = True

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code


def _recognizer():
    return current_app.extensions["digitrec.recognizer"]


def _check_not_other_type(data: bytes) -> None:
    head = data[:16].lstrip().lower()
    for magic, what in NON_IMAGE_MAGIC.items():
        if head.startswith(magic.lower()):
            raise ApiError(415, f"unsupported content type: the upload is {what}, not an image")


def _check_media_type(media_type: str | None) -> None:
    if media_type and not (media_type.startswith("image/")
                           or media_type == "application/octet-stream"):
        raise ApiError(415, f"unsupported content type {media_type!r}: send an image")


def _decode_base64(text: str) -> bytes:
    match = DATA_URL.match(text.strip())
    if match:
        _check_media_type(match["type"])
        if ";base64" not in match["params"].lower():
            raise ApiError(400, "the data URL must be base64-encoded (data:image/png;base64,...)")
        text = match["data"]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the image is not valid base64") from None


def _image_from_json() -> bytes:
    try:
        body = json.loads(request.get_data())
    except RecursionError:
        raise ApiError(400, "malformed JSON body: nested too deeply") from None
    except ValueError:  # also bytes that are not UTF-8
        raise ApiError(400, "malformed JSON body") from None
    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise ApiError(400, 'expected a JSON object {"image": "data:image/png;base64,..."}')
    return _decode_base64(body["image"])


def _image_from_multipart() -> bytes:
    upload = request.files.get("image")
    if upload is None:
        raise ApiError(400, "missing the multipart file field 'image'")
    _check_media_type(upload.mimetype or None)
    return upload.read()


def read_image() -> bytes:
    """The image bytes of the request: multipart field `image`, JSON data URL, or a raw body."""
    try:
        return _read_image()
    except BODY_ERRORS:  # the server could not read the body: bad chunked encoding, a cut upload
        raise ApiError(400, "the request body could not be read (malformed chunked encoding, "
                            "or the upload was cut off)") from None


def _read_image() -> bytes:
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        data = _image_from_multipart()
    elif request.is_json:
        data = _image_from_json()
    elif mimetype.startswith("image/") or mimetype == "application/octet-stream":
        data = request.get_data()
    else:
        raise ApiError(415, f"unsupported content type {mimetype or '(none)'!r}: send "
                            "multipart/form-data, application/json or an image/* body")
    if not data:
        raise ApiError(400, "the image is empty")
    _check_not_other_type(data)
    return data


def _run(method: str, data: bytes):
    """Call a Recognizer method; its input errors are answered with their own status
    (digitrec.errors: 400 unreadable, 413 too many pixels, 422 no digit)."""
    return getattr(_recognizer(), method)(data)


@api.post("/api/predict")
def predict():
    """Read one digit."""
    data = read_image()
    start = time.perf_counter()
    result = _run("predict", data).to_json()
    result["ms"] = round((time.perf_counter() - start) * 1000, 2)
    return jsonify(result)


@api.post("/api/read-number")
def read_number():
    """Read a line of digits, left to right."""
    data = read_image()
    start = time.perf_counter()
    reading = _run("read_number", data)
    if not reading.digits:
        raise ApiError(422, "no digit found in the image")
    ms = round((time.perf_counter() - start) * 1000, 2)
    boxes = [[int(v) for v in box] for box in reading.boxes]
    digits = [{**d.to_json(), "box": box} for d, box in zip(reading.digits, boxes, strict=False)]
    return jsonify(number=reading.number, best_guess=reading.best_guess,
                   confidence=reading.confidence, abstained=reading.abstained,
                   reason=reading.reason, reader=reading.reader, digits=digits, boxes=boxes,
                   ms=ms)


@api.get("/api/models")
def models():
    """The ensemble's members and their model cards."""
    rec = _recognizer()
    return jsonify(members=list(rec.cards), version=rec.version,
                   threshold=float(rec.threshold), inference=rec.inference, cards=rec.cards,
                   reader=rec.reader.card if rec.reader else None)


@api.get("/api/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(spec())


@api.get("/healthz")
def healthz():
    """Liveness: the models are loaded."""
    return jsonify(status="ok", models=len(_recognizer().cards))

