"""The "onnx" backend (the default): the BN-folded members exported to one ONNX graph, cached on
disk, run by onnxruntime (about twice as fast as the torch backend). `export_onnx` writes that
graph to a file."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from digitrec.errors import ModelError
from digitrec.inference.torch_backend import fold_batchnorm
from digitrec.models import INPUT_SHAPE, Ensemble, weights_digest

if TYPE_CHECKING:
    import onnxruntime


class MemberProbabilities(nn.Module):
    """The graph that export_onnx writes: BN-folded members, per-member softmax, stacked."""

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__()
        self.members = nn.ModuleDict(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) normalised images → per-member probabilities (M, N, 10)."""
        return torch.stack([torch.softmax(m(x), dim=1) for m in self.members.values()])


def onnx_bytes(ensemble: Ensemble) -> bytes:
    """The ensemble as one ONNX graph (the only export code path): input "x", float
    (N, 1, 28, 28) normalised as digitrec.models.to_tensor does; output "p", (M, N, 10)
    per-member softmax probabilities in the ensemble's member order; N is dynamic."""
    import io

    graph = MemberProbabilities({n: fold_batchnorm(m) for n, m in ensemble.members.items()})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), (torch.zeros(INPUT_SHAPE),), buffer, dynamo=False,
                          input_names=["x"], output_names=["p"],
                          dynamic_axes={"x": {0: "n"}, "p": {1: "n"}})
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path` (readers see
    the old file or the new one, never part of one; the mode follows the umask)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def export_onnx(ensemble: Ensemble, path: str | os.PathLike) -> Path:
    """Write the ensemble's ONNX graph (see onnx_bytes) to `path`, atomically; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, onnx_bytes(ensemble))
    return path


def onnx_session(model: bytes | str | os.PathLike,
                 threads: int | None = None) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session for an ONNX graph (bytes or a file): `threads` intra-op
    threads (default: torch.get_num_threads() now). With several threads, idle ones spin-wait
    for work (onnxruntime's default): a single image then takes about 0.7 instead of 1.1 ms
    (benchmarks/latency.py), for more CPU time; the server runs one thread per worker."""
    import onnxruntime as ort

    threads = torch.get_num_threads() if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_cache_dir() -> Path:
    """Where exported graphs are cached: $DIGITREC_CACHE/onnx, else
    $XDG_CACHE_HOME/digitrec/onnx, else ~/.cache/digitrec/onnx."""
    from digitrec.config import read
    return read().cache_home() / "onnx"


def onnx_cache_key(ensemble: Ensemble) -> str:
    """SHA-256 of what the exported graph depends on: each member's name, architecture and
    weights, the torch and onnx versions, and this module's source (the export code)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        onnx_version = version("onnx")
    except PackageNotFoundError:
        onnx_version = "none"
    digest = hashlib.sha256()
    digest.update(f"torch {torch.__version__}\0onnx {onnx_version}\0".encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(weights_digest(ensemble).encode())
    return digest.hexdigest()


CACHE_ENTRIES = 8  # graphs kept in the cache; the least recently used beyond are deleted


def read_cache(path: Path) -> bytes | None:
    """The cached graph's bytes (marking it used), or None when it is absent or unreadable."""
    try:
        data = path.read_bytes()
        os.utime(path)
        return data
    except (OSError, RuntimeError):
        return None


def write_cache(path: Path, data: bytes) -> None:
    """Store a graph in the cache and drop the least recently used graphs beyond
    CACHE_ENTRIES (older weights or versions); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
        entries = sorted(path.parent.glob("*.onnx"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-CACHE_ENTRIES]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def cached_session(path: Path | None, export: Callable[[], bytes],
                   matches: Callable[[Any], bool], threads: int | None = None
                   ) -> tuple[Any, bytes, bool]:
    """(session, graph bytes, whether from the cache) for a graph cached at `path`: the cached
    graph when it loads and `matches(session)`, else `export()` afresh, stored for next time
    (no caching when `path` is None); ModelError when even the fresh export does not match."""
    cached = read_cache(path) if path else None
    if cached is not None:
        with contextlib.suppress(Exception):  # corrupt or stale: export afresh below
            session = onnx_session(cached, threads)
            if matches(session):
                return session, cached, True
    graph = export()
    session = onnx_session(graph, threads)
    if not matches(session):
        raise ModelError("the exported ONNX graph does not compute what the model computes")
    if path:
        write_cache(path, graph)
    return session, graph, False


class OnnxEnsemble:
    """The ensemble as one ONNX graph run by onnxruntime; same interface as FastEnsemble. The
    graph is cached on disk (onnx_cache_dir, keyed by onnx_cache_key) so that loading does not
    re-export; a cache entry that fails to load or to match the ensemble is rebuilt.
    digitrec.inference.int8.Int8Ensemble runs the same graph quantised."""

    returns_probabilities = True

    precision = "fp32"

    def __init__(self, ensemble: Ensemble, threads: int | None = None, cache: bool = True):
        self.members = dict(ensemble.members)
        self.threads = torch.get_num_threads() if threads is None else threads
        self.cache_path: Path | None = None
        if cache:
            try:
                self.cache_path = onnx_cache_dir() / f"{onnx_cache_key(ensemble)}.onnx"
            except (OSError, RuntimeError):  # no home directory, unreadable source: no cache
                self.cache_path = None
        self.session, graph, self.from_cache = cached_session(
            self.cache_path, lambda: onnx_bytes(ensemble),
            lambda session: self._matches(ensemble, session), self.threads)
        self.graph = graph  # the fp32 graph
        self.running = graph  # the graph the session runs

    def with_threads(self, threads: int) -> OnnxEnsemble:
        """The same graph on a session of its own with `threads` intra-op threads (e.g. one,
        beside worker processes that need the other cores)."""
        if threads == self.threads:
            return self
        twin = copy.copy(self)
        twin.threads = threads
        twin.session = onnx_session(self.running, threads)
        return twin

    def _matches(self, ensemble: Ensemble, session: Any) -> bool:
        """Whether `session` computes what the ensemble computes, on a fixed probe batch."""
        probe = torch.randn((2, *INPUT_SHAPE[1:]), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = ensemble.member_probabilities(probe)
        got = torch.from_numpy(session.run(None, {"x": probe.numpy()})[0])
        return got.shape == expected.shape and bool(torch.allclose(got, expected, atol=1e-4))

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member probabilities, shape (M, N, 10)."""
        x = x.detach().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"x": x})[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble probabilities, shape (N, 10)."""
        return self.member_probabilities(x).mean(dim=0)

    def subset(self, names: list[str]) -> OnnxEnsemble:
        """An fp32 session over the named members only (same threads)."""
        return OnnxEnsemble(Ensemble({n: self.members[n] for n in names}), self.threads)

    def eval(self) -> OnnxEnsemble:
        """Already inference-only (nn.Module compatibility)."""
        return self


def onnx_available() -> bool:
    """True when onnxruntime and onnx (needed to export) are installed."""
    import importlib.util
    return all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))
