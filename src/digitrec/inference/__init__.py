"""Inference backends: the same ensemble run three ways, chosen by name.

- "onnx" (default when onnxruntime and onnx are installed): one ONNX graph, onnxruntime fp32;
- "int8": the same graph statically quantised from int8.json (what the web app serves);
- "torch": the members rewritten for channels-last PyTorch.

`create_backend(ensemble, name)` builds one; each has `member_probabilities(x)` (Backend)."""

from __future__ import annotations

import warnings

from digitrec.errors import ConfigError
from digitrec.inference.base import BACKENDS, Backend, check_backend
from digitrec.models import Ensemble

__all__ = ["BACKENDS", "Backend", "check_backend", "create_backend"]


def create_backend(ensemble: Ensemble, name: str | None = None,
                   int8_ranges: dict | None = None) -> Backend:
    """A backend computing the ensemble's probabilities: "onnx", "int8" (needs `int8_ranges`,
    a loaded int8.json) or "torch"; None: "onnx" when onnxruntime and onnx are installed
    (falling back to "torch", with a warning, if the ONNX path fails), else "torch"."""
    from digitrec.inference.onnx_backend import OnnxEnsemble, onnx_available
    from digitrec.inference.torch_backend import FastEnsemble, optimize_member

    chosen = check_backend(name)
    if chosen in ("onnx", "int8"):
        if not onnx_available():
            raise ConfigError(f"the {chosen} inference backend needs onnxruntime and onnx "
                              "installed (pip install onnxruntime onnx)")
        if chosen == "int8":
            if int8_ranges is None:
                raise ConfigError("the int8 backend needs int8 ranges for these weights "
                                  "(int8.json beside them: `digitrec quantize` writes it)")
            from digitrec.inference.int8 import Int8Ensemble
            return Int8Ensemble(ensemble, int8_ranges)
        return OnnxEnsemble(ensemble)
    if chosen is None and onnx_available():
        try:
            return OnnxEnsemble(ensemble)
        except Exception as exc:  # an unusual member or a broken install: the torch path
            warnings.warn(f"onnxruntime inference unavailable ({exc}); using the torch "
                          "backend", RuntimeWarning, stacklevel=2)
    try:
        return FastEnsemble({n: optimize_member(m) for n, m in ensemble.members.items()}).eval()
    except Exception as exc:  # an unusual member: still correct, just slower
        if chosen == "torch":
            raise
        warnings.warn(f"inference fast path unavailable ({exc}); using the reference ensemble",
                      RuntimeWarning, stacklevel=2)
        return ensemble
