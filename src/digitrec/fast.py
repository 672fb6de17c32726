"""Inference fast path for the ensemble: `optimize(ensemble)` returns an equivalent, faster module.

Per member (an eval-mode nn.Sequential): BatchNorm folded into the conv/linear before it, dropout
removed, ReLU moved after max-pooling (exact: max commutes with ReLU, and it touches 4x fewer
values), channels-last (NHWC) activations so that oneDNN runs the convolutions, and the first
Linear's columns permuted to read NHWC features directly (no copy back to NCHW at Flatten).
Outputs equal the reference to float rounding; tests/test_fast.py checks identical predictions.

That is the "torch" backend (FastEnsemble). The default, when onnxruntime and onnx are installed,
is the "onnx" backend (OnnxEnsemble): the BN-folded members exported to one ONNX graph (cached on
disk) and run by onnxruntime, about twice as fast. `export_onnx` writes that graph to a file.
The "int8" backend runs the same graph statically quantised (digitrec.quantize): about 1.6x
faster again per image, with predictions that agree on 99.9% of test images, not all.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from digitrec.models import Ensemble, weights_digest

if TYPE_CHECKING:
    import onnxruntime

INPUT_SHAPE = (1, 1, 28, 28)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode copy of a Sequential with each BatchNorm folded into the layer before it and
    dropout removed, so that inference runs fewer ops (other modules: an eval-mode copy)."""
    model = copy.deepcopy(model).eval()
    if not isinstance(model, nn.Sequential):
        return model
    layers: list[nn.Module] = []
    for layer in model:
        previous = layers[-1] if layers else None
        if isinstance(layer, nn.Dropout):
            continue
        if isinstance(layer, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            layers[-1] = fuse_conv_bn_eval(previous, layer)
        elif isinstance(layer, nn.BatchNorm1d) and isinstance(previous, nn.Linear):
            layers[-1] = fuse_linear_bn_eval(previous, layer)
        else:
            layers.append(layer)
    return nn.Sequential(*layers).eval()


def pool_before_relu(model: nn.Sequential) -> nn.Sequential:
    """Swap each ReLU → MaxPool2d pair: max-pooling commutes with ReLU, so the result is
    bit-identical and the ReLU runs on a quarter of the values."""
    layers = list(model)
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.ReLU) and isinstance(layers[i + 1], nn.MaxPool2d):
            layers[i], layers[i + 1] = layers[i + 1], nn.ReLU(inplace=True)
    return nn.Sequential(*layers).eval()


class FlattenNHWC(nn.Module):
    """Flatten a channels-last (N, C, H, W) tensor in its memory order (H, W, C): a free view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, H*W*C)."""
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def nhwc_head(model: nn.Sequential) -> nn.Sequential:
    """Replace Flatten → Linear by FlattenNHWC → Linear with its input columns permuted from
    (C, H, W) to (H, W, C) order, so a channels-last feature map needs no copy to flatten."""
    layers = list(model)
    x = torch.zeros(INPUT_SHAPE)
    with torch.no_grad():
        for i, layer in enumerate(layers[:-1]):
            following = layers[i + 1]
            if (isinstance(layer, nn.Flatten) and x.dim() == 4 and isinstance(following, nn.Linear)
                    and following.in_features == x[0].numel()):
                c, h, w = x.shape[1:]
                linear = copy.deepcopy(following)
                weight = linear.weight.view(-1, c, h, w).permute(0, 2, 3, 1).reshape(-1, c * h * w)
                linear.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
                layers[i], layers[i + 1] = FlattenNHWC(), linear
                break
            x = layer(x)
    return nn.Sequential(*layers).eval()


def optimize_member(member: nn.Module) -> nn.Module:
    """One member, folded and laid out for channels-last inference (gradients off)."""
    folded = fold_batchnorm(member)
    if isinstance(folded, nn.Sequential):
        folded = nhwc_head(pool_before_relu(folded))
    folded = folded.to(memory_format=torch.channels_last)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


class FastEnsemble(nn.Module):
    """The Ensemble's computation over optimised members (same outputs, faster)."""

    returns_probabilities = True

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__()
        self.members = nn.ModuleDict(members)

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member probabilities, shape (M, N, 10)."""
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.stack([torch.softmax(m(x), dim=1) for m in self.members.values()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble probabilities, shape (N, 10); each row sums to 1."""
        return self.member_probabilities(x).mean(dim=0)

    def subset(self, names: list[str]) -> FastEnsemble:
        """The same optimised members, only those named (for per-member measurements)."""
        return FastEnsemble({n: self.members[n] for n in names}).eval()


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
    (N, 1, 28, 28) normalised as digitrec.train.to_tensor does; output "p", (M, N, 10)
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
    """Where exported graphs are cached: $XDG_CACHE_HOME/digitrec/onnx, else
    ~/.cache/digitrec/onnx."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "digitrec" / "onnx"


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


def _read_cache(path: Path) -> bytes | None:
    """The cached graph's bytes (marking it used), or None when it is absent or unreadable."""
    try:
        data = path.read_bytes()
        os.utime(path)
        return data
    except (OSError, RuntimeError):
        return None


def _write_cache(path: Path, data: bytes) -> None:
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


class OnnxEnsemble:
    """The ensemble as one ONNX graph run by onnxruntime; same interface as FastEnsemble. The
    graph is cached on disk (onnx_cache_dir, keyed by onnx_cache_key) so that loading does not
    re-export; a cache entry that fails to load or to match the ensemble is rebuilt. With a
    `calibration` (a loaded int8.json, see digitrec.quantize) it runs the int8 graph instead,
    rebuilt from the fp32 one and cached the same way."""

    returns_probabilities = True

    def __init__(self, ensemble: Ensemble, threads: int | None = None, cache: bool = True,
                 calibration: dict | None = None):
        self.members = dict(ensemble.members)
        self.threads = torch.get_num_threads() if threads is None else threads
        self.cache_path: Path | None = None
        if cache:
            try:
                self.cache_path = onnx_cache_dir() / f"{onnx_cache_key(ensemble)}.onnx"
            except (OSError, RuntimeError):  # no home directory, unreadable source: no cache
                self.cache_path = None
        cached = _read_cache(self.cache_path) if self.cache_path else None
        self.from_cache = False
        if cached is not None:
            with contextlib.suppress(Exception):  # corrupt or stale: export afresh below
                self.session = onnx_session(cached, self.threads)
                self.from_cache = self._matches(ensemble)
        graph = cached
        if not self.from_cache:
            graph = onnx_bytes(ensemble)
            self.session = onnx_session(graph, self.threads)
            if not self._matches(ensemble):
                raise RuntimeError("the exported ONNX graph does not match the ensemble")
            if self.cache_path:
                _write_cache(self.cache_path, graph)
        self.precision = "fp32"
        if calibration is not None:
            self.session = self._int8_session(graph, calibration)
            self.precision = "int8"

    def _int8_session(self, graph: bytes, calibration: dict) -> onnxruntime.InferenceSession:
        """A session over the int8 graph: from the cache when it reproduces the calibration's
        probe outputs, else quantised afresh (QuantizationError if that does not either)."""
        import onnxruntime as ort

        from digitrec.quantize import check_probe, quantized_graph

        path = None
        if self.cache_path:  # the fp32 graph's key, the quantiser's version and the ranges
            ranges = json.dumps(calibration["ranges"], sort_keys=True)
            key = hashlib.sha256(f"{self.cache_path.stem}\0{ort.__version__}\0{ranges}"
                                 .encode()).hexdigest()
            path = self.cache_path.with_name(f"{key}.int8.onnx")
        cached = _read_cache(path) if path else None
        if cached is not None:
            with contextlib.suppress(Exception):  # corrupt or stale: quantise afresh below
                self.session = onnx_session(cached, self.threads)
                check_probe(self.member_probabilities, calibration)
                return self.session
        int8 = quantized_graph(graph, calibration)
        self.session = onnx_session(int8, self.threads)
        check_probe(self.member_probabilities, calibration)
        if path:
            _write_cache(path, int8)
        return self.session

    def _matches(self, ensemble: Ensemble) -> bool:
        """Whether the session computes what the ensemble computes, on a fixed probe batch."""
        probe = torch.randn((2, *INPUT_SHAPE[1:]), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = ensemble.member_probabilities(probe)
        got = self.member_probabilities(probe)
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


BACKENDS = ("onnx", "int8", "torch")


def optimize(ensemble: Ensemble, backend: str | None = None,
             calibration: dict | None = None) -> FastEnsemble | OnnxEnsemble:
    """An equivalent, faster module for an Ensemble. `backend`: "onnx" (OnnxEnsemble), "int8"
    (OnnxEnsemble on the int8 graph; needs the `calibration`, a loaded int8.json) or "torch"
    (FastEnsemble); default $DIGITREC_INFERENCE, else "onnx" when onnxruntime and onnx are
    installed (falling back to "torch", with a warning, if the ONNX path fails), else "torch"."""
    chosen = resolve_backend(backend)
    if chosen in ("onnx", "int8"):
        if not onnx_available():
            raise ImportError(f"the {chosen} inference backend needs onnxruntime and onnx "
                              "installed (pip install onnxruntime onnx)")
        if chosen == "int8" and calibration is None:
            raise ValueError("the int8 backend needs an int8 calibration of these weights "
                             "(int8.json beside them: `digitrec quantize` writes it)")
        return OnnxEnsemble(ensemble, calibration=calibration if chosen == "int8" else None)
    if chosen is None and onnx_available():
        try:
            return OnnxEnsemble(ensemble)
        except Exception as exc:  # an unusual member or a broken install: the torch path
            warnings.warn(f"onnxruntime inference unavailable ({exc}); using the torch fast "
                          "path", RuntimeWarning, stacklevel=2)
    return FastEnsemble({name: optimize_member(m)
                         for name, m in ensemble.members.items()}).eval()


def resolve_backend(backend: str | None = None) -> str | None:
    """The backend asked for: `backend`, else $DIGITREC_INFERENCE, else None (the default);
    ValueError for an unknown name."""
    chosen = (backend or os.environ.get("DIGITREC_INFERENCE", "")).strip().lower() or None
    if chosen not in (None, *BACKENDS):
        raise ValueError(f"unknown inference backend {backend or chosen!r} "
                         f"(argument or $DIGITREC_INFERENCE): use {', '.join(BACKENDS)}")
    return chosen
