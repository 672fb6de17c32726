"""Stopping and crashing lose no request a client has sent (`digitrec serve`, real gunicorn):
SIGTERM drains the listen queue and the parked connections, a new connection during the drain
fails cleanly before it sends anything, a killed worker is replaced, and gunicorn's timeout
answers 503 JSON."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import digitrec_process
from PIL import Image, ImageDraw

from digitrec.web.worker import SyncWorker, refuse_new_connections

QUEUED = 24  # requests waiting in the listen queue when SIGTERM comes


def _predict_request(port: int) -> bytes:
    """A whole HTTP request: POST /api/predict with a drawn 7 as the page sends it."""
    image = Image.new("RGBA", (280, 280), "white")
    ImageDraw.Draw(image).line([(70, 60), (200, 60), (120, 230)], fill="black", width=18)
    out = io.BytesIO()
    image.save(out, format="PNG")
    body = json.dumps({"image": "data:image/png;base64,"
                       + base64.b64encode(out.getvalue()).decode()}).encode()
    head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the sync worker closes after answering);
    then closes our end, as HTTP clients do (the server lingers until they have)."""
    sock.settimeout(20)
    chunks = []
    with sock:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _wait_for(log: Path, text: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{log.read_text()[-2000:]}"
        time.sleep(0.01)


def test_sigterm_serves_every_queued_request_then_exits(tmp_path):
    """The plain sync worker finishes its current request and exits; the kernel then resets the
    connections still queued. Here every one gets its answer."""
    log = tmp_path / "serve.log"
    with digitrec_process(log) as (base, proc):
        port = _port(base)
        request = _predict_request(port)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(QUEUED)]
        for client in clients:
            client.sendall(request)
        proc.send_signal(signal.SIGTERM)
        answers = [_response(client) for client in clients]
        assert proc.wait(timeout=15) == 0
    statuses = [answer.split(b"\r\n", 1)[0] for answer in answers]
    assert statuses == [b"HTTP/1.1 200 OK"] * QUEUED
    assert all(b'"best_guess":7' in answer for answer in answers)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_request_begun_before_sigterm_completes_and_newcomers_fail_cleanly(tmp_path):
    """A client halfway through sending its request when SIGTERM comes is still served; a client
    that connects during the drain is not accepted (its connect fails: it sent nothing), rather
    than accepted and reset after sending."""
    log = tmp_path / "serve.log"
    with digitrec_process(log) as (base, proc):
        port = _port(base)
        request = _predict_request(port)
        begun = socket.create_connection(("127.0.0.1", port))
        begun.sendall(request[:200])
        time.sleep(0.3)  # parked by the worker, its request incomplete
        proc.send_signal(signal.SIGTERM)
        _wait_for(log, "Handling signal: term")
        time.sleep(0.2)
        with pytest.raises(OSError) as newcomer:  # timed out (SYN dropped) or refused
            socket.create_connection(("127.0.0.1", port), timeout=1)
        assert not isinstance(newcomer.value, ConnectionResetError)
        assert proc.poll() is None  # still draining: the begun request holds it
        begun.sendall(request[200:])
        answer = _response(begun)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert proc.wait(timeout=15) == 0


def test_a_killed_worker_is_replaced_and_the_server_answers(tmp_path):
    """SIGKILL one of two workers: the other answers meanwhile, gunicorn starts a new one."""
    log = tmp_path / "serve.log"
    with digitrec_process(log, workers=2) as (base, proc):
        _wait_for(log, "Booting worker", 30)
        booted = log.read_text().count("Booting worker with pid")
        workers = [line.rsplit(" ", 1)[1] for line in log.read_text().splitlines()
                   if "Booting worker with pid" in line]
        os.kill(int(workers[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while log.read_text().count("Booting worker with pid") == booted:
            assert time.monotonic() < deadline, "no replacement worker was started"
            time.sleep(0.05)
        for _ in range(10):
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
                assert response.status == 200
        assert proc.poll() is None


def test_a_request_cut_short_by_gunicorns_timeout_gets_503_json():
    """gunicorn's timeout raises SystemExit inside the request; the client is told to retry."""
    server, client = socket.socketpair()
    with server, client:
        SyncWorker.handle_error(object(), None, server, ("", 0), SystemExit(1))
        server.shutdown(socket.SHUT_WR)
        answer = _response(client.dup())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1" in head
    assert "send it again" in json.loads(body)["error"]


def test_refuse_new_connections_keeps_the_queued_ones():
    """The filter a stopping server puts on its listening socket: a connection queued before it
    is still accepted and talks both ways; a new one cannot connect."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        queued = socket.create_connection(("127.0.0.1", port))
        queued.sendall(b"before")
        assert refuse_new_connections(listener)
        with pytest.raises(TimeoutError):
            socket.create_connection(("127.0.0.1", port), timeout=0.3)
        accepted, _ = listener.accept()
        with queued, accepted:
            accepted.settimeout(2)
            assert accepted.recv(16) == b"before"
            accepted.sendall(b"answer")
            queued.settimeout(2)
            assert queued.recv(16) == b"answer"
