"""The web app through Flask's test client: every endpoint, every error status, and the OpenAPI
document checked against real responses."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from conftest import weights_dir
from PIL import Image, ImageDraw

from digitrec.errors import ModelError
from digitrec.web import create_app
from digitrec.web.openapi import spec

ROOT = Path(__file__).resolve().parents[2]
PAGE_IDS = ("pad", "clear", "undo", "mode-number", "pen-width", "file", "result-digit",
            "result-number", "confidence", "bars", "models", "seen")


def png(strokes: list[list[tuple[float, float]]], size: tuple[int, int] = (280, 280),
        width: int = 22, background: int = 255, ink: int = 0) -> bytes:
    """A PNG of strokes (points as fractions of the size) drawn like on the page's pad."""
    image = Image.new("L", size, background)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x * size[0], y * size[1]) for x, y in stroke]
        draw.line(points, fill=ink, width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=ink)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


ONE = png([[(0.5, 0.15), (0.48, 0.85)]])
ELEVEN = png([[(0.25, 0.15), (0.25, 0.85)], [(0.75, 0.15), (0.75, 0.85)]], size=(560, 280))
BLANK = png([])


def data_url(data: bytes, media_type: str = "image/png") -> str:
    """A base64 data URL."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# ---- a small validator for the OpenAPI 3.1 (JSON Schema) subset the spec uses ---------------

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def validate(value, schema: dict, document: dict, where: str = "$") -> list[str]:
    """Errors of `value` against `schema` (type, enum, properties, required, items, bounds)."""
    if "$ref" in schema:
        node = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return validate(value, node, document, where)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(value, t) for t in types):
            return [f"{where}: {type(value).__name__} is not {'/'.join(types)}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        errors += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += validate(item, props[key], document, f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, document, f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: {len(value)} items < {schema['minItems']}")
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: {len(value)} items > {schema['maxItems']}")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += validate(item, schema["items"], document, f"{where}[{i}]")
    return errors


def check_response(response, path: str, method: str = "post") -> dict:
    """Assert the response is JSON and matches what the spec declares for its status."""
    document = spec()
    assert response.is_json, response.data[:200]
    declared = document["paths"][path][method]["responses"]
    assert str(response.status_code) in declared, f"status {response.status_code} not in spec"
    schema = declared[str(response.status_code)]["content"]["application/json"]["schema"]
    errors = validate(response.get_json(), schema, document)
    assert not errors, errors[:5]
    return response.get_json()


# ---- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app():
    """One app (one Recognizer) for the module."""
    return create_app({"WEIGHTS": str(weights_dir()), "TESTING": True})


@pytest.fixture()
def client(app):
    """A test client."""
    return app.test_client()


# ---- pages and metadata ----------------------------------------------------------------------

def test_index_page_has_the_controls_and_no_external_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for element_id in PAGE_IDS:
        assert f'id="{element_id}"' in html, element_id
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200, asset
        html += response.get_data(as_text=True)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "page must work offline"
    assert "touch-action: none" in client.get("/static/style.css").get_data(as_text=True)


def test_healthz(client):
    assert check_response(client.get("/healthz"), "/healthz", "get")["status"] == "ok"


def test_models_lists_members_and_cards(client, app):
    body = check_response(client.get("/api/models"), "/api/models", "get")
    assert body["members"] == list(app.extensions["digitrec.recognizer"].cards)
    assert set(body["cards"]) == set(body["members"])


def test_the_app_serves_int8_when_the_weights_are_calibrated(client):
    from digitrec.inference.int8 import INT8_FILE
    calibrated = (weights_dir() / INT8_FILE).exists()
    served = client.get("/api/models").get_json()["inference"]
    assert served == ("onnxruntime int8" if calibrated else "onnxruntime fp32")
    fp32 = create_app({"WEIGHTS": str(weights_dir()), "INFERENCE": "onnx", "TESTING": True})
    assert fp32.test_client().get("/api/models").get_json()["inference"] == "onnxruntime fp32"


def test_openapi_document_is_consistent(client):
    document = client.get("/api/openapi.json").get_json()
    assert document == spec() and document["openapi"].startswith("3.")
    served = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(rule))  # Flask's <int:x> is {x}
              for rule in client.application.url_map.iter_rules()}
    assert set(document["paths"]) == {r for r in served if r.startswith(("/api", "/healthz"))}
    refs = re.findall(r'"\$ref": "#/([^"]+)"', str(document).replace("'", '"'))
    for ref in refs:  # every $ref resolves
        node = document
        for part in ref.split("/"):
            node = node[part]


def test_validator_rejects_a_wrong_response():
    document = spec()
    bad = {"digit": "7", "confidence": 1.5, "probabilities": [0.1] * 9, "models": {},
           "abstained": False, "image28": [], "ms": 1}
    errors = validate(bad, {"$ref": "#/components/schemas/Prediction"}, document)
    assert len(errors) >= 4


# ---- predictions -----------------------------------------------------------------------------

def test_predict_multipart(client):
    response = client.post("/api/predict", data={"image": (io.BytesIO(ONE), "one.png",
                                                           "image/png")})
    body = check_response(response, "/api/predict")
    assert response.status_code == 200 and body["digit"] == 1
    assert abs(sum(body["probabilities"]) - 1) < 1e-3
    assert len(body["image28"]) == 28 and max(map(max, body["image28"])) > 100


def test_predict_json_data_url_and_bare_base64(client):
    for image in (data_url(ONE), base64.b64encode(ONE).decode()):
        response = client.post("/api/predict", json={"image": image})
        assert check_response(response, "/api/predict")["digit"] == 1


def test_predict_raw_image_body(client):
    response = client.post("/api/predict", data=ONE, content_type="image/png")
    assert check_response(response, "/api/predict")["digit"] == 1


def test_read_number(client):
    response = client.post("/api/read-number", json={"image": data_url(ELEVEN)})
    body = check_response(response, "/api/read-number")
    assert response.status_code == 200
    assert body["number"] == "11" and len(body["digits"]) == len(body["boxes"]) == 2


# ---- errors ----------------------------------------------------------------------------------

CORRUPT_PNG = ONE[:60] + b"\x00" * 40


def upload(data: bytes, name: str, media_type: str | None = None) -> dict:
    """Test-client kwargs for a multipart upload in the field `image`."""
    part = (io.BytesIO(data), name, media_type) if media_type else (io.BytesIO(data), name)
    return {"data": {"image": part}}


ERRORS = {  # case: (status, a function giving the test-client kwargs)
    "malformed JSON": (400, lambda: {"data": '{"image": ', "content_type": "application/json"}),
    "JSON not an object": (400, lambda: {"json": ["data:image/png;base64,AAAA"]}),
    "JSON without image": (400, lambda: {"json": {"picture": "x"}}),
    "bad base64": (400, lambda: {"json": {"image": "data:image/png;base64,@@not base64@@"}}),
    "data URL not base64": (400, lambda: {"json": {"image": "data:image/png,abc"}}),
    "corrupt PNG": (400, lambda: {"json": {"image": data_url(CORRUPT_PNG)}}),
    "random bytes": (400, lambda: upload(b"\x01\x02" * 50, "x.bin")),
    "multipart without image": (400, lambda: {"data": {"file": (io.BytesIO(ONE), "one.png")}}),
    "empty body": (400, lambda: {"data": b"", "content_type": "image/png"}),
    "text/plain body": (415, lambda: {"data": "seven", "content_type": "text/plain"}),
    "no content type": (415, lambda: {"data": "seven"}),
    "text file upload": (415, lambda: upload(b"hello", "a.txt", "text/plain")),
    "PDF upload": (415, lambda: upload(b"%PDF-1.7\n" + b"x" * 50, "a.bin")),
    "text data URL": (415, lambda: {"json": {"image": data_url(b"hello", "text/plain")}}),
    "blank canvas": (422, lambda: {"json": {"image": data_url(BLANK)}}),
}


@pytest.mark.parametrize("endpoint", ["/api/predict", "/api/read-number"])
@pytest.mark.parametrize("case", ERRORS)
def test_bad_input_gets_json_error(client, endpoint, case):
    status, kwargs = ERRORS[case]
    response = client.post(endpoint, **kwargs())
    assert response.status_code == status, response.get_json()
    body = check_response(response, endpoint)
    assert body["error"] and "Traceback" not in body["error"]


def test_oversize_upload_is_413(client, app, monkeypatch):
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (4 * 1024 * 1024 + 1)
    response = client.post("/api/predict", data={"image": (io.BytesIO(big), "big.png")})
    assert response.status_code == 413
    check_response(response, "/api/predict")
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1000)  # the limit is configurable
    response = client.post("/api/predict", json={"image": data_url(ONE)})
    assert response.status_code == 413 and response.is_json


def test_image_over_pixel_budget_is_413(client):
    from digitrec.io import MAX_PIXELS
    huge = Image.new("1", (8000, MAX_PIXELS // 8000 + 1), 1)
    out = io.BytesIO()
    huge.save(out, format="PNG")
    response = client.post("/api/predict", data=out.getvalue(), content_type="image/png")
    assert response.status_code == 413, response.get_json()
    check_response(response, "/api/predict")


def test_wrong_method_and_unknown_path_are_json(client):
    response = client.get("/api/predict")
    assert response.status_code == 405 and response.is_json and "POST" in response.headers["Allow"]
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404 and response.get_json()["error"]
    assert client.get("/no-such-page").mimetype == "text/html"  # pages keep HTML errors


def test_unexpected_error_is_json_500_without_trace(client, app, monkeypatch):
    def boom(image):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(app.extensions["digitrec.recognizer"], "predict", boom)
    response = client.post("/api/predict", json={"image": data_url(ONE)})
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}


# ---- serving ---------------------------------------------------------------------------------

def test_serve_command_options():
    from digitrec.cli import build_parser
    args = build_parser().parse_args(["serve", "--port", "9001", "--workers", "3", "--dev"])
    assert (args.host, args.port, args.workers, args.dev) == (None, 9001, 3, True)  # host:
    # $DIGITREC_HOST, else 127.0.0.1 (digitrec.config)


def test_gunicorn_post_fork_shares_cores(monkeypatch):
    import torch

    from digitrec.web import gunicorn_conf
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(gunicorn_conf, "cpu_cores", lambda: 8)
    server = type("Server", (), {"cfg": type("Cfg", (), {"workers": 3})()})()
    gunicorn_conf.post_fork(server, None)
    assert calls == [2]


def test_serve_refuses_a_directory_without_models(tmp_path):
    from digitrec.web.gunicorn_conf import serve
    with pytest.raises(ModelError, match="no \\*.safetensors models"):
        serve(weights=str(tmp_path))


def test_gunicorn_runs_sync_workers_by_default_and_gthread_with_threads(monkeypatch):
    from digitrec.web import gunicorn_conf
    settings = gunicorn_conf._settings()
    assert settings["threads"] == 1
    assert settings["worker_class"] == "digitrec.web.worker.SyncWorker"  # tests/test_worker.py
    assert gunicorn_conf.worker_class_for(4) == "gthread"
    # gthread workers: capped so that keep-alive clients spread over the workers, with room
    # left to keep alive
    assert gunicorn_conf.connections_per_worker(4) == 8 and settings["keepalive"]
    monkeypatch.setenv("DIGITREC_WORKER_CONNECTIONS", "32")
    assert gunicorn_conf.connections_per_worker(4) == 32


def test_serve_refuses_stale_int8_ranges_once_before_forking(tmp_path):
    """A stale int8.json is one clear line and exit status 4, not a traceback per worker."""
    import json
    import shutil
    import subprocess
    import sys

    from digitrec.models import BUNDLED_DIR
    shutil.copytree(BUNDLED_DIR, tmp_path / "w", ignore=shutil.ignore_patterns("zoo"))
    stale = json.loads((tmp_path / "w" / "int8.json").read_text())
    stale["weights_sha256"] = "0" * 64
    (tmp_path / "w" / "int8.json").write_text(json.dumps(stale))
    done = subprocess.run([sys.executable, "-m", "digitrec", "serve", "--weights",
                           str(tmp_path / "w"), "--port", "0"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 4 and "Traceback" not in done.stderr
    assert "recorded for other weights" in done.stderr and len(done.stderr.splitlines()) == 1


# ---- hostile requests (issue 14) ---------------------------------------------------------------

@pytest.mark.parametrize("body", ['{"a":' * 1000 + "1" + "}" * 1000, "[" * 50_000 + "]" * 50_000])
def test_deeply_nested_json_is_a_400_not_a_500(client, body):
    response = client.post("/api/predict", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "malformed JSON body: nested too deeply"}


def test_too_many_multipart_parts_says_so(client):
    fields = {f"f{i}": "x" for i in range(1500)}
    response = client.post("/api/predict", data=fields, content_type="multipart/form-data")
    assert response.status_code == 413
    assert "too many parts" in response.get_json()["error"]


@pytest.mark.parametrize(("width", "height"), [(1000, 5), (3000, 2)])
def test_a_degenerate_16_bit_strip_is_an_input_error(client, width, height):
    import numpy as np
    noise = np.random.default_rng(0).integers(0, 65535, (height, width), dtype=np.uint16)
    strip = io.BytesIO()
    Image.fromarray(noise).save(strip, "PNG")
    response = client.post("/api/predict", data=strip.getvalue(), content_type="image/png")
    assert response.status_code == 422
    assert response.get_json()["error"].startswith("no digit found")


def test_a_bad_chunk_size_is_a_400_from_the_real_server(tmp_path):
    import http.client
    from urllib.parse import urlparse

    from conftest import digitrec_server
    with digitrec_server(tmp_path / "server.log") as url:
        address = urlparse(url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        connection.putrequest("POST", "/api/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        connection.send(b"zz\r\nnot hex\r\n0\r\n\r\n")
        response = connection.getresponse()
        body = response.read()
        assert response.status == 400, body
        assert b'"error"' in body


def test_read_number_refuses_a_page_of_dots_with_a_422(client):
    import numpy as np
    from PIL import ImageDraw
    rng = np.random.default_rng(0)
    page = Image.new("L", (800, 200), 255)
    draw = ImageDraw.Draw(page)
    for x, y in zip(rng.integers(0, 800, 900), rng.integers(0, 200, 900), strict=True):
        draw.ellipse((x, y, x + 2, y + 2), fill=0)
    data = io.BytesIO()
    page.save(data, "PNG")
    response = client.post("/api/read-number", data=data.getvalue(), content_type="image/png")
    assert response.status_code == 422 and "too many" in response.get_json()["error"]


def test_an_over_limit_upload_gets_its_413_even_from_http_client(tmp_path):
    """Python's http.client sends the whole body before reading: the server reads and drops a
    refused body (up to 4x the limit) so that the client gets the JSON 413, not a broken pipe."""
    import http.client
    import json
    from urllib.parse import urlparse

    from conftest import digitrec_server
    with digitrec_server(tmp_path / "server.log") as url:
        address = urlparse(url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        connection.request("POST", "/api/predict", body=b"\x89PNG" + b"\0" * (6 * 1024 * 1024),
                           headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        assert response.status == 413
        assert "too large" in json.loads(response.read())["error"]


def test_the_model_version_is_in_the_api_and_on_the_page(client):
    from digitrec.models import load_ensemble, weights_digest
    version = weights_digest(load_ensemble(weights_dir())[0])
    assert client.get("/api/models").get_json()["version"] == version
    page = client.get("/").get_data(as_text=True)
    assert f'title="{version}">{version[:12]}</span>' in page
