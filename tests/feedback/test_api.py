"""POST /api/feedback, GET /api/feedback/stats, DELETE /api/feedback/<id> through Flask's test
client: every validation case answers precise 4xx JSON, stored rows hold what the model saw,
responses match the OpenAPI document."""

from __future__ import annotations

import base64
import importlib.util
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from dbfixtures import *  # noqa: F403 (the fixtures)
from dbfixtures import BLANK, ELEVEN, ONE, SEVEN

from digitrec.feedback import FeedbackStore, images28_of
from digitrec.web import create_app

_spec = importlib.util.spec_from_file_location(
    "web_test_helpers", Path(__file__).resolve().parents[1] / "web" / "test_web.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
validate = _helpers.validate
UNDO = "/api/feedback/{correction_id}"  # Flask's /api/feedback/<int:correction_id>


def data_url(data: bytes) -> str:
    """A PNG data URL."""
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def checked(response, path: str, method: str) -> dict:
    """The JSON body, after checking it against the spec's schema for its status."""
    from digitrec.web.openapi import spec
    document = spec()
    assert response.is_json, response.data[:200]
    declared = document["paths"][path][method]["responses"]
    assert str(response.status_code) in declared, (response.status_code, response.get_json())
    schema = declared[str(response.status_code)]["content"]["application/json"]["schema"]
    errors = validate(response.get_json(), schema, document)
    assert not errors, errors[:5]
    return response.get_json()


@pytest.fixture()
def db(tmp_path) -> str:
    """A fresh SQLite database per test."""
    return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"


@pytest.fixture()
def client(db, recognizer):
    """A test client of an app storing corrections in `db`."""
    app = create_app({"RECOGNIZER": recognizer, "TESTING": True, "DB_URL": db})
    return app.test_client()


def post(client, image: bytes = ONE, **fields):
    """POST /api/feedback as multipart with these form fields."""
    return client.post("/api/feedback", data={"image": (io.BytesIO(image), "x.png",
                                                         "image/png"), **fields},
                       content_type="multipart/form-data")


def test_a_digit_correction_is_stored_as_seen(client, db, recognizer):
    response = post(client, label="7", predicted="1", source="page")
    assert response.status_code == 201
    body = checked(response, "/api/feedback", "post")
    assert (body["label"], body["mode"], body["source"], body["predicted"]) == \
        ("7", "digit", "page", "1")
    assert response.headers["Location"] == f"/api/feedback/{body['id']}"
    row = FeedbackStore.open(db).get(body["id"])
    assert row.image == ONE and row.label == "7" and row.model_version == body["model_version"]
    assert np.array_equal(images28_of(row)[0], recognizer.predict(ONE).image28)


def test_a_number_correction_stores_each_digit(client, db):
    response = client.post("/api/feedback", json={"image": data_url(ELEVEN), "label": "17"})
    body = checked(response, "/api/feedback", "post")
    assert response.status_code == 201 and body["mode"] == "number" and body["predicted"] == "11"
    assert images28_of(FeedbackStore.open(db).get(body["id"])).shape == (2, 28, 28)


def test_a_raw_image_body_takes_the_label_from_the_query(client):
    response = client.post("/api/feedback?label=4&mode=digit", data=SEVEN,
                           content_type="image/png")
    assert response.status_code == 201 and response.get_json()["label"] == "4"


@pytest.mark.parametrize(("fields", "image", "status", "words"), [
    ({}, ONE, 400, "missing the correct label"),
    ({"label": ""}, ONE, 400, "missing the correct label"),
    ({"label": "a"}, ONE, 400, "is not a digit"),
    ({"label": "-1"}, ONE, 400, "is not a digit"),
    ({"label": "4.0"}, ONE, 400, "is not a digit"),
    ({"label": "\u0664"}, ONE, 400, "is not a digit"),  # ARABIC-INDIC FOUR: not 0-9
    ({"label": "1" * 65}, ONE, 400, "at most 64"),
    ({"label": "42", "mode": "digit"}, ONE, 400, "one digit"),
    ({"label": "4", "mode": "letters"}, ONE, 400, "not one of digit, number"),
    ({"label": "4", "source": "cli"}, ONE, 400, "not one of page, api"),
    ({"label": "4", "predicted": "x"}, ONE, 400, "not a string of digits"),
    ({"label": "123"}, ELEVEN, 422, "has 3 digits but 2 were found"),
    ({"label": "12", "mode": "number"}, ONE, 422, "has 2 digits but 1 was found"),
    ({"label": "4"}, BLANK, 422, ""),
    ({"label": "44"}, BLANK, 422, ""),
    ({"label": "4"}, b"", 400, "empty"),
    ({"label": "4"}, b"not an image at all", 400, ""),
])
def test_bad_input_gets_precise_4xx_json(client, db, fields, image, status, words):
    response = post(client, image, **fields)
    assert response.status_code == status, response.get_json()
    body = checked(response, "/api/feedback", "post")
    assert words in body["error"]
    assert FeedbackStore.open(db).count() == 0


def test_json_fields_of_the_wrong_type(client):
    response = client.post("/api/feedback", json={"image": data_url(ONE), "label": True})
    assert response.status_code == 400 and "label" in response.get_json()["error"]
    response = client.post("/api/feedback", json={"image": data_url(ONE), "label": "1",
                                                  "mode": 3})
    assert response.status_code == 400 and "'mode' must be a string" in \
        response.get_json()["error"]
    response = client.post("/api/feedback", json={"image": data_url(ONE), "label": 4})
    assert response.status_code == 201 and response.get_json()["label"] == "4"


def test_stats_and_undo(client, db):
    saved = [post(client, label=label).get_json() for label in ("7", "7", "1")]
    ids, tokens = [s["id"] for s in saved], [s["undo_token"] for s in saved]
    stats = checked(client.get("/api/feedback/stats"), "/api/feedback/stats", "get")
    assert stats["total"] == 3 and stats["by_label"] == {"7": 2, "1": 1}
    assert stats["confusions"] == [{"predicted": "1", "label": "7", "count": 2}]
    response = client.delete(f"/api/feedback/{ids[0]}")  # no token
    assert response.status_code == 400 and checked(response, UNDO, "delete")
    response = client.delete(f"/api/feedback/{ids[0]}", headers={"X-Undo-Token": tokens[2]})
    assert response.status_code == 403 and checked(response, UNDO, "delete")
    response = client.delete(f"/api/feedback/{ids[0]}", json={"undo_token": tokens[0]})
    assert checked(response, UNDO, "delete") == {"deleted": ids[0]}
    response = client.delete(f"/api/feedback/{ids[0]}", headers={"X-Undo-Token": tokens[0]})
    assert response.status_code == 404 and checked(response, UNDO, "delete")
    store = FeedbackStore.open(db)
    with store.engine.begin() as connection:  # make the second one old
        from digitrec.feedback.models import Correction
        connection.execute(Correction.__table__.update().where(
            Correction.__table__.c.id == ids[1]).values(
            created=datetime.now(UTC) - timedelta(hours=1)))
    response = client.delete(f"/api/feedback/{ids[1]}", headers={"X-Undo-Token": tokens[1]})
    assert response.status_code == 409 and "no longer be undone" in response.get_json()["error"]
    assert store.count() == 2


def test_feedback_is_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert {"/api/feedback", "/api/feedback/stats", UNDO} <= set(paths)
    assert client.get("/api/feedback").status_code == 405


def test_an_unreachable_database_is_503_json(recognizer):
    app = create_app({"RECOGNIZER": recognizer, "TESTING": True,
                      "DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x?connect_timeout=2"})
    response = post(app.test_client(), label="1")
    assert response.status_code == 503 and "cannot" in response.get_json()["error"]


def test_postgresql_behind_the_api(postgres, recognizer):
    url = postgres.create_database()
    client = create_app({"RECOGNIZER": recognizer, "TESTING": True, "DB_URL": url}).test_client()
    response = post(client, label="7")
    assert response.status_code == 201
    assert FeedbackStore.open(url).get(response.get_json()["id"]).image == ONE
