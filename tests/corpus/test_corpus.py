"""The bad-input corpus (scripts/make_corpus.py, issue 14) against every entry: the Flask test
client, a real gunicorn server over http.client and raw sockets, Recognizer.predict and
predict_many, and the CLI. Each case has one exact expected answer; no 5xx anywhere."""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, digitrec_server, weights_dir
from PIL import Image

from digitrec import errors
from digitrec.recognizer import Prediction, PredictionError, Recognizer

sys.path.insert(0, str(REPO / "scripts"))
import make_corpus  # noqa: E402

CASES = make_corpus.cases()
WEB_CASES = [c for c in CASES if c.kind != "raw"]
RAW_CASES = [c for c in CASES if c.kind == "raw"]
IMAGE_CASES = [c for c in CASES if c.kind == "image"]


def _ids(cases: list[make_corpus.Case]) -> list[str]:
    return [c.name for c in cases]


def _headers(case: make_corpus.Case) -> dict[str, str]:
    return {"Content-Type": case.content_type} if case.content_type is not None else {}


def check_answer(case: make_corpus.Case, status: int, body: bytes) -> None:
    """The exact status; a 4xx body that should carry one is JSON with "error"; never 5xx."""
    assert status < 500, f"{case.name}: {status} {body[:300]!r}"
    assert status == case.status, f"{case.name}: expected {case.status}, got {status} " \
                                  f"{body[:300]!r}"
    if status >= 400 and case.json_body:
        answer = json.loads(body)
        assert isinstance(answer.get("error"), str) and answer["error"], answer
        assert "Traceback" not in answer["error"] and " object at 0x" not in answer["error"]
    if status == 200 and case.path.startswith("/api/predict") and case.method == "POST":
        assert json.loads(body)["best_guess"] in range(10)


def test_the_corpus_is_large_and_covers_every_category() -> None:
    """≥ 150 cases, every category of issue 14 present, generated the same way twice."""
    assert len(CASES) >= 150
    categories = {c.category for c in CASES}
    assert categories >= {"modes", "degenerate", "bombs", "truncated", "animated", "exif",
                          "not-image", "content-type", "multipart", "json", "http", "raw"}
    assert [(c.name, c.body, c.raw) for c in make_corpus.cases()] == \
           [(c.name, c.body, c.raw) for c in CASES]
    assert {c.status for c in CASES} >= {200, 400, 405, 413, 415, 422}


@pytest.fixture(scope="module")
def client():
    """A Flask test client of the app on the test weights."""
    from digitrec.web import create_app
    return create_app({"WEIGHTS": str(weights_dir()), "TESTING": True}).test_client()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """One real `digitrec serve` (gunicorn) for the module: (host, port)."""
    log = tmp_path_factory.mktemp("corpus-server") / "server.log"
    with digitrec_server(log) as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)
        # (before the shutdown, whose quick exit may log a trace of its own)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def recognizer(client) -> Recognizer:
    """The test client's Recognizer."""
    return client.application.extensions["digitrec.recognizer"]


@pytest.mark.parametrize("case", WEB_CASES, ids=_ids(WEB_CASES))
def test_test_client(client, case: make_corpus.Case) -> None:
    """Each request case through Flask's test client."""
    response = client.open(case.path, method=case.method, data=case.body,
                           headers=_headers(case))
    check_answer(case, response.status_code, response.get_data())


def test_real_server(server) -> None:
    """Every request case, then every raw-socket case, against one real gunicorn server."""
    host, port = server
    failures = []
    for case in WEB_CASES:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request(case.method, case.path, body=case.body or None,
                         headers=_headers(case))
            response = conn.getresponse()
            check_answer(case, response.status, response.read())
        except (AssertionError, OSError, ValueError) as exc:
            failures.append(f"{case.name}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()
    for case in RAW_CASES:
        try:
            status, body = _raw_exchange(host, port, case.raw)
            check_answer(case, status, body)
        except (AssertionError, OSError, ValueError) as exc:
            failures.append(f"{case.name}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def _raw_exchange(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """Write `request` to a new connection and read the answer (status, body)."""
    with socket.create_connection((host, port), timeout=15) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the request ends here, whatever it declared
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def test_recognizer_predict(recognizer: Recognizer) -> None:
    """predict: a Prediction for the 200 cases, the case's InputError subclass for the others;
    a PIL image opened lazily from a truncated file is an ImageDecodeError too (item 8)."""
    failures = []
    for case in IMAGE_CASES:
        try:
            result = recognizer.predict(case.body)
            got = None if isinstance(result, Prediction) else type(result).__name__
        except errors.InputError as exc:
            got = type(exc).__name__
            assert str(exc) and " object at 0x" not in str(exc)
        if got != case.error:
            failures.append(f"{case.name}: expected {case.error}, got {got}")
    for case in (c for c in IMAGE_CASES if c.category == "truncated"):
        try:
            lazy = Image.open(io.BytesIO(case.body))
        except Exception:  # Pillow refuses the header: nothing to hand over
            continue
        with pytest.raises(errors.ImageDecodeError):
            recognizer.predict(lazy)
    assert not failures, "\n".join(failures)


def test_recognizer_predict_many(recognizer: Recognizer) -> None:
    """predict_many over every image case at once: each bad one a PredictionError of its
    class in its own slot, each good one answered."""
    results = recognizer.predict_many([c.body for c in IMAGE_CASES])
    assert len(results) == len(IMAGE_CASES)
    for case, result in zip(IMAGE_CASES, results, strict=True):
        if case.error is None:
            assert isinstance(result, Prediction), (case.name, result)
        else:
            assert isinstance(result, PredictionError), (case.name, result)
            assert type(result.error).__name__ == case.error, (case.name, result.error)
            assert result.message


def test_cli_answers_every_file(tmp_path: Path) -> None:
    """`digitrec predict` over every image file in one run: one line per file, in order, an
    error line exactly for the bad ones, exit status 3, no traceback."""
    paths = make_corpus.write_images(tmp_path, CASES)
    proc = subprocess.run(
        [sys.executable, "-m", "digitrec", "predict", "--weights", str(weights_dir()),
         *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == errors.EXIT_INPUT, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths), proc.stdout[-2000:]
    for case, path, line in zip(IMAGE_CASES, paths, lines, strict=True):
        assert line.startswith(f"{path}: "), (case.name, line)
        is_error = line.startswith(f"{path}: error: ")
        assert is_error == (case.status != 200), (case.name, line)
        assert " object at 0x" not in line
