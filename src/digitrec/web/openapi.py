"""The OpenAPI 3.1 description served at /api/openapi.json (tests validate real responses
against these schemas, so keep them in step with api.py)."""

from __future__ import annotations

from typing import Any

from digitrec import __version__

PROBS = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
         "minItems": 10, "maxItems": 10,
         "description": "Probability of each digit 0-9 (sums to 1)."}
IMAGE28 = {
    "type": "array", "minItems": 28, "maxItems": 28,
    "items": {"type": "array", "minItems": 28, "maxItems": 28,
              "items": {"type": "integer", "minimum": 0, "maximum": 255}},
    "description": "The 28x28 MNIST-style image the models saw: rows of grey levels "
                   "0-255, 0 = background, 255 = ink.",
}
BOX = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4, "maxItems": 4,
       "description": "Where the digit is in the input image, in pixels: [x0, y0, x1, y1] "
                      "(left, top, right, bottom; right and bottom exclusive)."}
READING_PROPS: dict[str, Any] = {
    "digit": {"type": ["integer", "null"], "minimum": 0, "maximum": 9,
              "description": "The digit read; null when it abstains (see `reason`)."},
    "best_guess": {"type": "integer", "minimum": 0, "maximum": 9,
                   "description": "The most probable digit, also when it abstains."},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                   "description": "Ensemble probability of `best_guess`."},
    "probabilities": PROBS,
    "models": {"type": "object", "additionalProperties": PROBS,
               "description": "Each member model's probabilities (its vote is the argmax)."},
    "abstained": {"type": "boolean",
                  "description": "True when the answer is not sure: the models disagree or "
                                 "the confidence is under the calibrated threshold."},
    "reason": {"type": ["string", "null"], "description": "Why it abstained, else null."},
    "image28": IMAGE28,
}
READING_REQUIRED = ["digit", "best_guess", "confidence", "probabilities", "models", "abstained",
                    "image28"]
MS = {"type": "number", "minimum": 0, "description": "Server-side recognition time (ms)."}

SCHEMAS: dict[str, Any] = {
    "Prediction": {
        "type": "object", "required": [*READING_REQUIRED, "ms"],
        "properties": {**READING_PROPS, "ms": MS},
    },
    "DigitReading": {
        "type": "object", "required": [*READING_REQUIRED, "box"],
        "properties": {**READING_PROPS, "box": BOX},
    },
    "NumberReading": {
        "type": "object",
        "required": ["number", "best_guess", "confidence", "abstained", "digits", "boxes", "ms"],
        "properties": {
            "number": {"type": ["string", "null"],
                       "description": "The digits left to right; null when any is unsure."},
            "best_guess": {"type": "string",
                           "description": "The digits' best guesses, also when it abstains."},
            "reason": {"type": ["string", "null"],
                       "description": "Why the number is unsure (the readers disagree, which "
                       "digits are unsure), else null."},
            "reader": {"type": "string", "enum": ["segmenter", "both", "sequence"],
                       "description": "Whose digits these are: the segmenter's (cut, then the "
                       "ensemble on each), both readers' (they agree), or the sequence "
                       "reader's (they disagree and it is the surer)."},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "Probability that every digit is right."},
            "abstained": {"type": "boolean",
                          "description": "True if any digit is unsure or the readers disagree."},
            "digits": {"type": "array", "items": {"$ref": "#/components/schemas/DigitReading"}},
            "boxes": {"type": "array", "items": BOX},
            "ms": MS,
        },
    },
    "Models": {
        "type": "object", "required": ["members", "version", "threshold", "inference", "cards"],
        "properties": {
            "members": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "version": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                        "description": "The model version: SHA-256 of the weights (what a "
                                       "correction records)."},
            "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "Confidence under which a prediction abstains."},
            "inference": {"type": "string", "enum": ["onnxruntime int8", "onnxruntime fp32",
                                                     "torch"],
                          "description": "What runs the models: the int8 graph when the "
                                         "weights carry an int8 calibration."},
            "cards": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["name", "architecture"],
                "description": "The model card: training setup and test metrics."}},
            "reader": {"type": ["object", "null"], "required": ["name", "architecture"],
                       "description": "The sequence reader's card (whole numbers), or null "
                                      "when none is loaded."},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "models"],
        "properties": {"status": {"type": "string", "enum": ["ok"]},
                       "models": {"type": "integer", "minimum": 1}},
    },
    "FeedbackSaved": {
        "type": "object",
        "required": ["id", "created", "source", "mode", "label", "predicted", "model_version",
                     "undo_seconds", "undo_token"],
        "properties": {
            "id": {"type": "integer", "minimum": 1, "description": "The stored row's id."},
            "created": {"type": "string", "description": "When it was stored (ISO 8601, UTC)."},
            "source": {"type": "string", "enum": ["page", "api", "cli"]},
            "mode": {"type": "string", "enum": ["digit", "number"]},
            "label": {"type": "string", "description": "The right digit(s), as stored."},
            "predicted": {"type": ["string", "null"],
                          "description": "What the model serving now reads in the image."},
            "model_version": {"type": "string",
                              "description": "SHA-256 of the weights that read it."},
            "undo_seconds": {"type": "integer", "minimum": 0,
                             "description": "Seconds during which DELETE undoes it."},
            "undo_token": {"type": "string", "description": "The secret DELETE needs to undo "
                           "it (X-Undo-Token header); given once, stored only as a hash."},
        },
    },
    "FeedbackStats": {
        "type": "object",
        "required": ["total", "by_label", "by_model", "by_source", "confusions"],
        "properties": {
            "total": {"type": "integer", "minimum": 0},
            "by_label": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_model": {"type": "object", "additionalProperties": {"type": "integer"},
                         "description": "Corrections per model version (weights SHA-256)."},
            "by_source": {"type": "object", "additionalProperties": {"type": "integer"}},
            "confusions": {"type": "array", "description": "predicted → label where they "
                           "differ, most frequent first.", "items": {
                               "type": "object", "required": ["predicted", "label", "count"],
                               "properties": {"predicted": {"type": "string"},
                                              "label": {"type": "string"},
                                              "count": {"type": "integer", "minimum": 1}}}},
        },
    },
    "FeedbackDeleted": {
        "type": "object", "required": ["deleted"],
        "properties": {"deleted": {"type": "integer", "minimum": 1}},
    },
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What went wrong."}},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {"image": {"type": "string", "description":
                                     "A data URL (data:image/png;base64,...) or bare base64."}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
IMAGE_ERRORS = {
    "400": _error("Malformed JSON, bad base64, missing field, or not an image / corrupt."),
    "413": _error("Upload over the size limit (default 4 MB) or image over the pixel budget."),
    "415": _error("Unsupported content type (a non-image body or file)."),
    "422": _error("No digit found (blank image)."),
}


FEEDBACK_FIELDS: dict[str, Any] = {
    "label": {"type": "string", "pattern": "^[0-9]{1,64}$",
              "description": "The right answer: a digit, or the digits of the number."},
    "predicted": {"type": "string", "pattern": "^[0-9]*$",
                  "description": "Optional: what the page showed (checked, not stored: the "
                                 "row records what the model reads now)."},
    "mode": {"type": "string", "enum": ["digit", "number"],
             "description": "Optional: digit for one digit, number for a line of digits "
                            "(default: by the label's length)."},
    "source": {"type": "string", "enum": ["page", "api"], "description": "Default api."},
}
FEEDBACK_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image", "label"],
            "properties": {"image": {"type": "string", "format": "binary"},
                           **FEEDBACK_FIELDS}}},
        "application/json": {"schema": {
            "type": "object", "required": ["image", "label"],
            "properties": {"image": {"type": "string", "description":
                                     "A data URL (data:image/png;base64,...) or bare base64."},
                           **FEEDBACK_FIELDS}}},
        "image/*": {"schema": {"type": "string", "format": "binary"},
                    "description": "The fields then go in the query string (?label=4)."},
    },
}


def spec() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "digitrec", "version": __version__,
                 "description": "Handwritten digit recognition with a CNN ensemble. Errors "
                                "are JSON {\"error\": \"...\"} with a 4xx/5xx status."},
        "paths": {
            "/api/predict": {"post": {
                "summary": "Read one handwritten digit.", "operationId": "predict",
                "requestBody": IMAGE_BODY,
                "responses": {"200": _ok("Prediction", "What the ensemble read."),
                              **IMAGE_ERRORS},
            }},
            "/api/read-number": {"post": {
                "summary": "Read a line of handwritten digits, left to right.",
                "operationId": "readNumber", "requestBody": IMAGE_BODY,
                "responses": {"200": _ok("NumberReading", "The number and each digit."),
                              **IMAGE_ERRORS},
            }},
            "/api/feedback": {"post": {
                "summary": "Store a correction: the image and its right label.",
                "description": "Reads the image as /api/predict (or /api/read-number in number "
                               "mode) does and stores the image as received, the 28x28 image(s) "
                               "the model saw, what it read, the label, the model version and "
                               "the time; no IP address or other personal data.",
                "operationId": "addFeedback", "requestBody": FEEDBACK_BODY,
                "responses": {
                    "201": _ok("FeedbackSaved", "Stored; Location names the row."),
                    **IMAGE_ERRORS,
                    "400": _error("Not an image, or a label that is not digits (or more than "
                                  "one digit in digit mode), or a bad field."),
                    "422": _error("No digit found, or the label's digit count is not the "
                                  "number of digits found."),
                    "503": _error("The database of corrections cannot be reached."),
                },
            }},
            "/api/feedback/stats": {"get": {
                "summary": "Counts of the stored corrections.", "operationId": "feedbackStats",
                "responses": {"200": _ok("FeedbackStats", "Counts."),
                              "503": _error("The database cannot be reached.")},
            }},
            "/api/feedback/{correction_id}": {"delete": {
                "summary": "Undo a correction stored in the last few minutes.",
                "operationId": "undoFeedback",
                "parameters": [{"name": "correction_id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 1}},
                               {"name": "X-Undo-Token", "in": "header", "required": True,
                                "schema": {"type": "string"}, "description": "The undo_token "
                                "POST /api/feedback answered (or undo_token in a JSON body)."}],
                "responses": {"200": _ok("FeedbackDeleted", "Deleted."),
                              "400": _error("No undo token."),
                              "403": _error("Not this correction's undo token (or it has "
                                            "none: stored by the CLI or an import)."),
                              "404": _error("No such correction."),
                              "409": _error("Too old to undo (see undo_seconds)."),
                              "503": _error("The database cannot be reached.")},
            }},
            "/api/models": {"get": {
                "summary": "The ensemble members and their model cards.",
                "operationId": "models",
                "responses": {"200": _ok("Models", "Members and model cards.")},
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document.", "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                      "content": {"application/json": {}}}},
            }},
            "/healthz": {"get": {
                "summary": "Liveness: the models are loaded.", "operationId": "health",
                "responses": {"200": _ok("Health", "Serving.")},
            }},
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": {"NotFound": _error("No such endpoint."),
                          "MethodNotAllowed": _error("Wrong HTTP method.")},
        },
    }
