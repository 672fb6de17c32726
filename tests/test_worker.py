"""digitrec.web.worker: `digitrec serve`'s default sync worker is not stalled by a connection
that sends nothing (a browser's preconnect), serves it when its request comes, and closes it
after the keep-alive time if it never does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import weights_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """`digitrec serve` with ONE worker and its default worker class; yields (host, port)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("worker") / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digitrec.cli", "serve", "--port", str(port), "--workers",
             "1", "--weights", str(weights_dir())],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(f"http://127.0.0.1:{port}/healthz", 2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"`digitrec serve` did not come up:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
    assert "Using worker: digitrec.web.worker.SyncWorker" in log_path.read_text()
    yield ("127.0.0.1", port)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
