"""digitrec.web.worker: `digitrec serve`'s default sync worker is not stalled by a connection
that sends nothing (a browser's preconnect), serves it when its request comes, and closes it
after the keep-alive time if it never does."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from conftest import digitrec_server


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """`digitrec serve` with ONE worker and its default worker class; yields (host, port)."""
    log_path = tmp_path_factory.mktemp("worker") / "serve.log"
    with digitrec_server(log_path) as url:
        assert "Using worker: digitrec.web.worker.SyncWorker" in log_path.read_text()
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def test_a_silent_connection_does_not_stall_the_worker(base):
    host, port = base
    with socket.create_connection((host, port)) as silent:
        time.sleep(0.3)  # accepted (and parked) by now
        start = time.monotonic()
        assert b'"status":"ok"' in _get(f"http://{host}:{port}/healthz", timeout=5)
        assert time.monotonic() - start < 2  # the plain sync worker waits on `silent` here
        silent.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        silent.settimeout(5)
        assert silent.recv(64).startswith(b"HTTP/1.1 200")


def test_a_connection_that_never_speaks_is_closed_after_keepalive(base):
    from digitrec.web.gunicorn_conf import keepalive
    host, port = base
    with socket.create_connection((host, port)) as idle:
        idle.settimeout(keepalive + 10)
        start = time.monotonic()
        assert idle.recv(16) == b""  # closed by the server, not by our timeout
        assert keepalive - 1 <= time.monotonic() - start < keepalive + 10


@pytest.mark.parametrize("connections", [4, 32])
def test_slow_clients_do_not_stop_the_server(base, connections):
    """Slowloris: clients that send their request headers (or body) a byte at a time are parked
    until their request is whole; the worker answers others within a second meanwhile."""
    host, port = base
    slow = []
    try:
        for k in range(connections):
            sock = socket.create_connection((host, port))
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n" if k % 2 else b"G")
            if k % 2:  # a body that never comes
                sock.sendall(b"Content-Type: image/png\r\nContent-Length: 5000\r\n\r\n\x89P")
            slow.append(sock)
        for _ in range(3):
            for k, sock in enumerate(slow):
                sock.sendall(b"E" if k % 2 == 0 else b"N")  # one more byte each
            start = time.monotonic()
            assert b'"status":"ok"' in _get(f"http://{host}:{port}/healthz", timeout=5)
            assert time.monotonic() - start < 1
            time.sleep(0.2)
    finally:
        for sock in slow:
            sock.close()


def test_a_slow_large_upload_does_not_hold_a_worker(base):
    """A photo of 600 KB sent over 2 s, as from a phone on a weak link: the worker reads it as
    it comes and answers others meanwhile, then answers it (the plain sync worker — and this
    one with a peeked 32 KB — blocked on such a body until it was whole)."""
    import io

    import numpy as np
    from PIL import Image
    host, port = base
    noise = np.random.default_rng(0).integers(0, 256, (450, 450, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="PNG")
    body = out.getvalue()
    assert len(body) > 500_000
    head = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, port)) as upload:
        upload.sendall(head)
        pieces = 10
        step = len(body) // pieces + 1
        for k in range(pieces - 1):  # all but the last: the request is not whole yet
            upload.sendall(body[k * step:(k + 1) * step])
            start = time.monotonic()
            assert b'"status":"ok"' in _get(f"http://{host}:{port}/healthz", timeout=5)
            assert time.monotonic() - start < 1
            time.sleep(0.2)
        upload.sendall(body[(pieces - 1) * step:])
        upload.settimeout(30)
        answer = upload.recv(65536)
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 200 OK", b"HTTP/1.1 422 UNPROCESSABLE ENTITY")


@pytest.mark.parametrize(("request_bytes", "whole"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcd", False),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", True),  # over the limit: 413
    (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", True),  # gunicorn answers 400
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
])
def test_when_a_request_is_whole(request_bytes, whole):
    from digitrec.web.worker import _request_whole
    assert _request_whole(bytearray(request_bytes)) is whole
