"""Shared fixtures: the MNIST directory (../shared/mnist or $DIGITREC_DATA) and loaded data."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from digitrec.models import BUNDLED_DIR

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The suite (and the servers and CLIs it starts) caches exported ONNX graphs in a directory of
# its own, not in the user's ~/.cache/digitrec.
_CACHE = tempfile.mkdtemp(prefix="digitrec-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def _mnist_dir() -> Path | None:
    for candidate in (os.environ.get("DIGITREC_DATA"), REPO.parent / "shared" / "mnist"):
        if candidate and (Path(candidate) / "t10k-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    return None


def weights_dir() -> Path:
    """$DIGITREC_WEIGHTS, else the bundled weights."""
    directory = Path(os.environ.get("DIGITREC_WEIGHTS") or BUNDLED_DIR)
    if not any(directory.glob("*.safetensors")):
        pytest.fail(f"no trained models in {directory}: set DIGITREC_WEIGHTS to a directory of "
                    "*.safetensors models")
    return directory


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST directory; skips (saying so) when it is absent."""
    directory = _mnist_dir()
    if directory is None:
        pytest.skip("MNIST not found: set $DIGITREC_DATA or put it in ../shared/mnist")
    os.environ["DIGITREC_DATA"] = str(directory)
    return directory


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """The four MNIST arrays, loaded once per session."""
    from digitrec.data.mnist import load_mnist
    return load_mnist(mnist_dir)


@contextlib.contextmanager
def digitrec_server(log_path: Path, workers: int = 1,
                    env: dict[str, str] | None = None) -> Iterator[str]:
    """`digitrec serve` (gunicorn, `workers` workers of the default class, the test weights) on
    a free port, its output in `log_path`, `env` added to its environment; yields its base URL
    once /healthz answers."""
    with digitrec_process(log_path, workers, env) as (base, _):
        yield base


@contextlib.contextmanager
def digitrec_process(log_path: Path, workers: int = 1, env: dict[str, str] | None = None
                     ) -> Iterator[tuple[str, subprocess.Popen]]:
    """As digitrec_server, yielding (base URL, the gunicorn master's process) for tests that
    signal it; stopped (if still running) on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digitrec", "serve", "--port", str(port), "--workers",
             str(workers), "--weights", str(weights_dir())],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _healthy(base):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"`digitrec serve` did not come up:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the server and its workers, nothing else
        proc.wait()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def run_ranks(command: list[str], cwd: Path | None = None, timeout: float = 240,
              **env: str) -> subprocess.CompletedProcess:
    """Run a (torchrun / --nproc) command in a session of its own, one torch thread a rank and
    `env` added; on a hang, kill it and every rank it started, and fail."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    full.pop("DIGITREC_FAULT_STEP", None)
    proc = subprocess.Popen(command, cwd=cwd, env={**full, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{command} hung:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Numbers are read a few digits at a time: with batches that small, a second torch thread
    only spins (and crawls when the other core is busy). Modules opt in with usefixtures."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recognizer():
    """The bundled ensemble."""
    from digitrec.recognizer import Recognizer
    return Recognizer.load()

