"""The "int8" backend: the ONNX graph statically quantised, rebuilt at load time from int8.json.

`record_ranges` runs the fp32 graph on MNIST training images, records every activation's range
(onnxruntime's MinMax calibration) and returns, with a digest of the weights they belong to, the
contents of `int8.json` beside the weights: a few KB of JSON instead of a second copy of the
weights. `quantized_graph` rebuilds the int8 graph from that file (QDQ format, int8 per-channel
weights, uint8 activations, float logits and softmax; deterministic, about 0.1 s; needs no data),
and `Int8Ensemble` runs it, cached on disk like the fp32 graph. The web app serves it by default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from digitrec.errors import QuantizationError
from digitrec.inference.onnx_backend import (
    OnnxEnsemble,
    onnx_bytes,
    onnx_session,
    read_cache,
    write_cache,
)
from digitrec.models import INPUT_SHAPE, Ensemble, to_tensor, weights_digest

INT8_FILE = "int8.json"  # beside the weights
MIN_ACCURACY = 0.9965  # `calibrate` refuses a quantisation that scores less on the test set
MIN_AGREEMENT = 0.999  # ...or that agrees less often with the fp32 graph
PROBE_TOLERANCE = 0.05  # a rebuilt graph must reproduce the recorded probe outputs this closely
FORMAT = 1
# The convolutional trunk and the linear layers run in int8. Linear outputs (the logits) and
# the softmax stay in float: quantised probabilities would move in steps of 1/255 and no longer
# sum to 1.
QUANTIZED_OPS = ["Conv", "Gemm", "MaxPool", "Relu", "Flatten"]


def probe() -> torch.Tensor:
    """A fixed input batch (2 images) whose int8 outputs int8.json records."""
    return torch.randn((2, *INPUT_SHAPE[1:]), generator=torch.Generator().manual_seed(0))


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence onnxruntime.quantization's advice logged on the root logger at every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(graph: bytes, ranges_file: Path, reader=None) -> bytes:
    """quantize_static of `graph`: with `reader`, calibrate and write `ranges_file`; without,
    read the ranges from it."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="digitrec-int8-") as tmp:
        source, target = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(graph)
        with _quiet_quantizer():
            quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibration_cache_path=ranges_file,
                            extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm"]})
        return target.read_bytes()


def _graph_tensors(graph: bytes) -> set[str]:
    """Names of every tensor the graph's nodes read or write."""
    import onnx

    model = onnx.load_from_string(graph)
    return {name for node in model.graph.node for name in (*node.input, *node.output)}


def quantized_graph(graph: bytes, int8: dict) -> bytes:
    """The int8 (QDQ) graph of an fp32 graph exported by fast.onnx_bytes, from the ranges in
    `int8` (a loaded int8.json). QuantizationError when they do not fit the graph."""
    ranges = int8["ranges"]
    missing = set(ranges["data"]) - _graph_tensors(graph)
    if missing:
        raise QuantizationError(f"{INT8_FILE} names tensors this export does not have "
                                f"({sorted(missing)[0]}, ...): re-run `digitrec quantize`")
    with tempfile.TemporaryDirectory(prefix="digitrec-int8-") as tmp:
        ranges_file = Path(tmp, "ranges.json")
        ranges_file.write_text(json.dumps(ranges))
        return _quantize(graph, ranges_file)


def check_probe(member_probabilities, int8: dict) -> None:
    """Raise QuantizationError unless a session reproduces the probe outputs recorded with
    the ranges (guards against a quantiser or runtime that builds a different graph)."""
    got = member_probabilities(probe()).numpy()
    want = np.asarray(int8["probe_output"], dtype=np.float32)
    if got.shape != want.shape or float(np.abs(got - want).max()) > PROBE_TOLERANCE:
        raise QuantizationError(f"the int8 graph rebuilt from {INT8_FILE} does not reproduce "
                                "its recorded outputs: re-run `digitrec quantize`")


def load_int8_ranges(directory: str | os.PathLike, ensemble: Ensemble) -> dict | None:
    """The int8 ranges (int8.json) in `directory`, None when there are none; QuantizationError
    when the file is unreadable or belongs to other weights."""
    path = Path(directory) / INT8_FILE
    if not path.exists():
        return None
    try:
        int8 = json.loads(path.read_text())
        ranges = int8["ranges"]["data"]
        if int8.get("format") != FORMAT or not isinstance(ranges, dict):
            raise ValueError("unknown format")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QuantizationError(f"{path} holds no usable int8 ranges ({exc})") from None
    if int8.get("weights_sha256") != weights_digest(ensemble):
        raise QuantizationError(f"{path} was recorded for other weights: re-run "
                                "`digitrec quantize`")
    return int8


def _batches(images: np.ndarray, size: int = 100):
    """onnxruntime CalibrationDataReader over uint8 (N, 28, 28) images."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.starts = iter(range(0, len(images), size))

        def get_next(self) -> dict | None:
            start = next(self.starts, None)
            if start is None:
                return None
            return {"x": to_tensor(images[start:start + size]).numpy()}

    return Reader()


def _member_probabilities(session, images: np.ndarray) -> np.ndarray:
    """(M, N, 10) from an onnxruntime session over uint8 images, in batches of 500."""
    return np.concatenate([session.run(None, {"x": to_tensor(images[i:i + 500]).numpy()})[0]
                           for i in range(0, len(images), 500)], axis=1)


def record_ranges(ensemble: Ensemble, calibration_images: np.ndarray, test_images: np.ndarray,
              test_labels: np.ndarray) -> dict:
    """Record int8 activation ranges on `calibration_images` and measure the int8 graph on
    the test set against the fp32 graph: the int8.json contents (see `good_enough`)."""
    graph = onnx_bytes(ensemble)
    with tempfile.TemporaryDirectory(prefix="digitrec-int8-") as tmp:
        ranges_file = Path(tmp, "ranges.json")
        int8 = _quantize(graph, ranges_file, _batches(calibration_images))
        ranges = json.loads(ranges_file.read_text())
    fp32_session, int8_session = onnx_session(graph, 1), onnx_session(int8, 1)
    fp32 = _member_probabilities(fp32_session, test_images).mean(axis=0).argmax(axis=1)
    got = _member_probabilities(int8_session, test_images).mean(axis=0).argmax(axis=1)
    probe_output = int8_session.run(None, {"x": probe().numpy()})[0]
    return {
        "format": FORMAT,
        "weights_sha256": weights_digest(ensemble),
        "members": list(ensemble.members),
        "scheme": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 "
                  f"activations, MinMax calibration; quantised ops: {', '.join(QUANTIZED_OPS)}; "
                  "float logits and softmax",
        "calibration_images": f"the first {len(calibration_images):,} MNIST training images",
        "test_accuracy": float((got == test_labels).mean()),
        "test_accuracy_fp32": float((fp32 == test_labels).mean()),
        "test_agreement_with_fp32": float((got == fp32).mean()),
        "test_images": len(test_images),
        "probe_output": probe_output.tolist(),
        "ranges": ranges,
    }


def good_enough(ranges: dict) -> bool:
    """Whether int8 ranges meet the bar for serving: MIN_ACCURACY on the test set and
    MIN_AGREEMENT with the fp32 graph."""
    return (ranges["test_accuracy"] >= MIN_ACCURACY
            and ranges["test_agreement_with_fp32"] >= MIN_AGREEMENT)


class Int8Ensemble(OnnxEnsemble):
    """OnnxEnsemble on the int8 graph rebuilt from `ranges` (a loaded int8.json): from the
    cache when it reproduces the recorded probe outputs, else quantised afresh
    (QuantizationError if that does not reproduce them either)."""

    def __init__(self, ensemble: Ensemble, ranges: dict, threads: int | None = None,
                 cache: bool = True):
        super().__init__(ensemble, threads, cache)
        import onnxruntime as ort

        path = None
        if self.cache_path:  # the fp32 graph's key, the quantiser's version and the ranges
            key = hashlib.sha256(f"{self.cache_path.stem}\0{ort.__version__}\0"
                                 f"{json.dumps(ranges['ranges'], sort_keys=True)}"
                                 .encode()).hexdigest()
            path = self.cache_path.with_name(f"{key}.int8.onnx")
        self.precision = "int8"
        cached = read_cache(path) if path else None
        if cached is not None:
            with contextlib.suppress(Exception):  # corrupt or stale: quantise afresh below
                self.session = onnx_session(cached, self.threads)
                check_probe(self.member_probabilities, ranges)
                self.running = cached
                return
        int8 = quantized_graph(self.graph, ranges)
        self.session = onnx_session(int8, self.threads)
        check_probe(self.member_probabilities, ranges)
        self.running = int8
        if path:
            write_cache(path, int8)
