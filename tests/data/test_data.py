"""IDX parsing and validation, data-directory resolution, and the verified multi-mirror fetch
against loopback HTTP servers (a good mirror, a dead one, one serving corrupted bytes)."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from digitrec.data import mnist as data
from digitrec.data.mnist import FetchError, IDXError, fetch, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, suffix):
    array = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = tmp_path / f"images-idx3-ubyte{suffix}"
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    np.testing.assert_array_equal(read_idx(path), array)
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), labels)


def _idx_bytes(array: np.ndarray) -> bytes:
    return (b"\x00\x00\x08" + bytes([array.ndim])
            + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes())


def test_truncated_file_names_file_and_problem(tmp_path):
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-100]))
    with pytest.raises(IDXError, match=r"short-idx3-ubyte\.gz: truncated"):
        read_idx(path)


def test_wrong_magic(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
    with pytest.raises(IDXError, match="bad-magic: bad magic number 0x00000d03"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(_idx_bytes(np.ones((3, 28, 28), np.uint8)))
    path = tmp_path / "corrupt.gz"
    path.write_bytes(good[:12] + bytes(b ^ 0xFF for b in good[12:40]) + good[40:])
    with pytest.raises(IDXError, match="corrupt.gz: corrupt gzip stream"):
        read_idx(path)


def test_trailing_bytes_and_tiny_input():
    with pytest.raises(IDXError, match="trailing bytes"):
        parse_idx(_idx_bytes(np.zeros((2, 2), np.uint8)) + b"x", "t")
    with pytest.raises(IDXError, match="too short"):
        parse_idx(b"\x00", "t")


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITREC_DATA", str(tmp_path / "env"))
    assert data.default_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("DIGITREC_DATA")
    assert data.default_data_dir() == Path.home() / ".cache" / "digitrec" / "mnist"


def test_missing_data_says_how_to_fetch(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="digitrec data fetch"):
        data.load_mnist(tmp_path)


def test_real_mnist_shapes_and_split(mnist):
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    train_x, _ = mnist.split("train")
    val_x, val_y = mnist.split("val")
    assert len(train_x) == 55000 and len(val_x) == 5000
    np.testing.assert_array_equal(val_y, mnist.train_labels[-5000:])
    assert set(np.unique(mnist.test_labels)) == set(range(10))


# --- fetch against loopback mirrors -------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Corrupting(_Quiet):
    """Serves the real files with a few bytes flipped in the middle."""

    def copyfile(self, source, outputfile):
        payload = bytearray(source.read())
        payload[len(payload) // 2] ^= 0xFF
        outputfile.write(bytes(payload))


@pytest.fixture
def mirror(mnist_dir):
    """Start a loopback HTTP server over the MNIST dir; yields a factory of base URLs."""
    servers = []

    def start(handler=_Quiet) -> str:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(mnist_dir)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more


def test_fetch_from_good_mirror_after_dead_and_corrupt(mirror, tmp_path, mnist_dir):
    log = []
    mirrors = (_dead_url(), mirror(_Corrupting), mirror())
    fetch(tmp_path, mirrors=mirrors, timeout=5, log=log.append)
    for name in data.FILES.values():
        assert (tmp_path / name).read_bytes() == (mnist_dir / name).read_bytes()
    assert not list(tmp_path.glob("*.part"))
    assert len(data.load_mnist(tmp_path).test_labels) == 10000
    # a second fetch finds everything in place and downloads nothing
    log.clear()
    fetch(tmp_path, mirrors=(_dead_url(),), timeout=5, log=log.append)
    assert all("present, checksum verified" in line for line in log)


def test_fetch_rejects_corrupted_bytes_and_keeps_nothing(mirror, tmp_path):
    with pytest.raises(FetchError) as info:
        fetch(tmp_path, mirrors=(_dead_url(), mirror(_Corrupting)), timeout=5, log=lambda _: None)
    message = str(info.value)
    assert "checksum mismatch" in message and "Connection refused" in message
    assert list(tmp_path.iterdir()) == []


def test_fetch_replaces_a_corrupt_local_copy(mirror, tmp_path, mnist_dir):
    for name in data.FILES.values():
        shutil.copy(mnist_dir / name, tmp_path / name)
    victim = tmp_path / data.FILES["test-labels"]
    victim.write_bytes(b"garbage")
    fetch(tmp_path, mirrors=(mirror(),), timeout=5, log=lambda _: None)
    assert victim.read_bytes() == (mnist_dir / victim.name).read_bytes()
