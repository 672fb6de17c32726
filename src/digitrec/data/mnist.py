"""MNIST in its IDX format: read, validate, locate and download, with verified checksums."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digitrec.config import read
from digitrec.errors import DataError

FILES = {
    "train-images": "train-images-idx3-ubyte.gz",
    "train-labels": "train-labels-idx1-ubyte.gz",
    "test-images": "t10k-images-idx3-ubyte.gz",
    "test-labels": "t10k-labels-idx1-ubyte.gz",
}

# Accepted SHA-256 digests per file: the canonical release, and the shared rebuild whose
# train-images differ by a tone-curve round trip (see ../shared/mnist/README.md).
SHA256 = {
    "train-images-idx3-ubyte.gz": {
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "8e59d4e6322d5e291f26338633ee8015e1369ee4616a784cd934bc27c2948978",
    },
    "train-labels-idx1-ubyte.gz": {
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    },
    "t10k-images-idx3-ubyte.gz": {
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    },
    "t10k-labels-idx1-ubyte.gz": {
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

VALIDATION_SIZE = 5000
_IDX_DTYPES = {0x08: np.uint8}


class IDXError(DataError, ValueError):
    """An IDX file is corrupt, truncated or not IDX at all; the message names the file."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The MNIST files are not in the data directory."""


class FetchError(DataError, RuntimeError):
    """No mirror delivered a file whose checksum verifies."""


def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else $DIGITREC_DATA, else ~/.cache/digitrec/mnist."""
    if data_dir:
        return Path(data_dir).expanduser()
    return read().data_dir or Path.home() / ".cache" / "digitrec" / "mnist"


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (gzipped or raw) into an array, validating magic, dimensions and size."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXError(f"{name}: corrupt gzip stream ({exc})") from None
    if len(raw) < 4:
        raise IDXError(f"{name}: too short for an IDX header ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise IDXError(f"{name}: bad magic number 0x{raw[:4].hex()} (expected 0x0000080N, N=1..4)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{name}: truncated header ({len(raw)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise IDXError(f"{name}: {problem}: {len(raw)} bytes, dimensions {shape} need {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or raw) from disk."""
    path = Path(path)
    return parse_idx(path.read_bytes(), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX; gzip when the name ends in .gz unless told otherwise."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)


def _locate(directory: Path, filename: str) -> Path:
    for candidate in (directory / filename, directory / filename.removesuffix(".gz")):
        if candidate.exists():
            return candidate
    raise DataNotFoundError(
        f"{filename} not found in {directory}: run `digitrec data fetch --data-dir {directory}`"
        " or set $DIGITREC_DATA"
    )


@dataclass(frozen=True)
class MNIST:
    """MNIST as uint8 arrays: images (N, 28, 28), labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """'train' (first 55,000), 'val' (last 5,000 of training), 'full' (all 60,000) or 'test'."""
        cut = len(self.train_images) - VALIDATION_SIZE
        if name == "train":
            return self.train_images[:cut], self.train_labels[:cut]
        if name == "val":
            return self.train_images[cut:], self.train_labels[cut:]
        if name == "full":
            return self.train_images, self.train_labels
        if name == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"unknown split {name!r}: use train, val, full or test")


def load_mnist(data_dir: str | os.PathLike | None = None) -> MNIST:
    """Load the four MNIST files from the data directory, validating each."""
    directory = default_data_dir(data_dir)
    arrays = {key: read_idx(_locate(directory, name)) for key, name in FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}-images"], arrays[f"{part}-labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise IDXError(f"{part}: expected (N, 28, 28) images and (N,) labels")
        if len(images) != len(labels):
            raise IDXError(f"{part}: {len(images)} images but {len(labels)} labels")
        if labels.max(initial=0) > 9:
            raise IDXError(f"{part}-labels: label {labels.max()} is not a digit")
    return MNIST(arrays["train-images"], arrays["train-labels"],
                 arrays["test-images"], arrays["test-labels"])


def file_checksums(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """SHA-256 of each MNIST file in the data directory, for model cards."""
    directory = default_data_dir(data_dir)
    return {name: sha256_file(_locate(directory, name)) for name in FILES.values()}


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  leave=False, disable=None) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


def fetch(data_dir: str | os.PathLike | None = None, mirrors: tuple[str, ...] = MIRRORS,
          timeout: float = 30.0, log=print) -> Path:
    """Download the four files, trying each mirror in turn; keep only SHA-256-verified bytes."""
    directory = default_data_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for filename in FILES.values():
        target = directory / filename
        if target.exists() and sha256_file(target) in SHA256[filename]:
            log(f"{filename}: present, checksum verified")
            continue
        problems = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            try:
                payload = _download(url, timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            digest = hashlib.sha256(payload).hexdigest()
            if digest not in SHA256[filename]:
                problems.append(f"{url}: checksum mismatch (sha256 {digest[:12]}…)")
                continue
            with tempfile.NamedTemporaryFile(dir=directory, prefix=filename, suffix=".part",
                                             delete=False) as tmp:
                tmp.write(payload)
            os.replace(tmp.name, target)
            log(f"{filename}: downloaded from {mirror}, checksum verified")
            break
        else:
            raise FetchError(f"{filename}: no mirror delivered a verified copy:\n  "
                             + "\n  ".join(problems))
    return directory
