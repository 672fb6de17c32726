"""Fast paths agree with the reference: both inference backends (torch FastEnsemble, onnxruntime
OnnxEnsemble) predict exactly what the eager Ensemble predicts on 1,000 MNIST test images, the
exported ONNX graph is cached on disk (and rebuilt when the entry is bad), and `train --fast` runs
and writes a model card."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch

from digitrec.errors import ConfigError
from digitrec.inference import create_backend
from digitrec.inference import onnx_backend as fast_module
from digitrec.inference.onnx_backend import OnnxEnsemble, onnx_bytes, onnx_cache_key
from digitrec.inference.torch_backend import FastEnsemble, fold_batchnorm
from digitrec.models import (
    BUNDLED_DIR,
    Ensemble,
    create_model,
    load_ensemble,
    save_model,
    to_tensor,
)
from digitrec.training.loop import predict_proba, train_fast

optimize = create_backend
BUNDLE_MEMBERS = ("cnn1", "cnnbn", "cnn5", "vgg8")


def _trained_like(name: str, images: np.ndarray) -> torch.nn.Module:
    """A member with non-trivial BatchNorm statistics (one train-mode pass over real images)."""
    torch.manual_seed(0)
    model = create_model(name).train()
    with torch.no_grad():
        for _ in range(3):
            model(to_tensor(images))
    return model.eval()


@pytest.fixture(scope="module")
def ensemble(mnist) -> Ensemble:
    """The bundled ensemble when present, else the four architectures with real BN statistics."""
    if any(BUNDLED_DIR.glob("*.safetensors")):
        return load_ensemble()[0]
    images = mnist.train_images[:256]
    return Ensemble({n: _trained_like(n, images) for n in BUNDLE_MEMBERS}).eval()


@pytest.fixture(scope="module")
def test_images(mnist) -> np.ndarray:
    """The first 1,000 MNIST test images."""
    return mnist.test_images[:1000]


@pytest.fixture(scope="module")
def reference(ensemble, test_images) -> np.ndarray:
    """The eager ensemble's probabilities on the 1,000 test images, computed once."""
    return predict_proba(ensemble, test_images)


@pytest.fixture(scope="module", autouse=True)
def onnx_cache_home(tmp_path_factory):
    """A fresh ONNX cache for this module (not the user's ~/.cache)."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("xdg-cache")
        patch.setenv("XDG_CACHE_HOME", str(home))
        patch.delenv("DIGITREC_INFERENCE", raising=False)
        yield home


@pytest.fixture(scope="module")
def backends(ensemble) -> dict:
    """The optimised ensemble from each backend, built once."""
    return {name: optimize(ensemble, name) for name in ("torch", "onnx")}


@pytest.fixture
def small(ensemble) -> Ensemble:
    """The ensemble's first member alone (quick to export)."""
    return Ensemble(dict(list(ensemble.members.items())[:1])).eval()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_optimized_ensemble_predicts_exactly_like_the_reference(reference, backends, backend,
                                                                 test_images):
    fast = predict_proba(backends[backend], test_images)
    assert np.array_equal(fast.argmax(1), reference.argmax(1))
    assert np.abs(fast - reference).max() < 1e-4


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_optimized_members_match_each_reference_member(ensemble, backends, backend, test_images):
    x = to_tensor(test_images[:200])
    with torch.inference_mode():
        reference = ensemble.member_probabilities(x)
        fast = backends[backend].member_probabilities(x)
    assert fast.shape == reference.shape
    assert torch.equal(fast.argmax(-1), reference.argmax(-1))
    assert float((fast - reference).abs().max()) < 1e-4


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_single_image_path_matches_batch_path(backends, backend, test_images):
    fast = backends[backend]
    with torch.inference_mode():
        batch = fast(to_tensor(test_images[:8]))
        singles = torch.cat([fast(to_tensor(test_images[i:i + 1])) for i in range(8)])
    assert torch.allclose(batch, singles, atol=1e-5)


def test_default_backend_is_onnx_and_unknown_names_are_config_errors(small):
    assert isinstance(optimize(small), OnnxEnsemble)
    assert isinstance(optimize(small, "torch"), FastEnsemble)
    with pytest.raises(ConfigError, match="openvino"):
        optimize(small, "openvino")


def test_default_backend_falls_back_to_torch_when_onnx_fails(small, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no graph today")

    monkeypatch.setattr(fast_module, "OnnxEnsemble", broken)
    with pytest.warns(RuntimeWarning, match="no graph today"):
        assert isinstance(optimize(small), FastEnsemble)
    with pytest.raises(RuntimeError):  # asked for explicitly: no fallback
        optimize(small, "onnx")
    monkeypatch.setattr(fast_module, "onnx_available", lambda: False)  # not installed
    assert isinstance(optimize(small), FastEnsemble)
    with pytest.raises(ConfigError, match="onnxruntime"):
        optimize(small, "onnx")


def test_onnx_session_threads_follow_torch_or_the_argument(small):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert OnnxEnsemble(small).threads == 1
        assert OnnxEnsemble(small, threads=2).threads == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError):
        OnnxEnsemble(small, threads=0, cache=False)


def test_onnx_cache_is_reused_and_bad_entries_are_rebuilt(ensemble, small, tmp_path,
                                                          monkeypatch, test_images):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = OnnxEnsemble(small)
    path = first.cache_path
    assert not first.from_cache and path.parent == tmp_path / "digitrec" / "onnx"
    assert path.exists() and path.name == f"{onnx_cache_key(small)}.onnx"
    good = path.read_bytes()

    export = fast_module.onnx_bytes
    monkeypatch.setattr(fast_module, "onnx_bytes", lambda e: pytest.fail("exported again"))
    second = OnnxEnsemble(small)  # reuses the file: no export
    assert second.from_cache
    monkeypatch.setattr(fast_module, "onnx_bytes", export)

    x = to_tensor(test_images[:64])
    with torch.inference_mode():
        want = small.member_probabilities(x)
    for bad in (b"", good[: len(good) // 2], b"\x00 not a graph" * 100,
                onnx_bytes(Ensemble(dict(list(ensemble.members.items())[1:2])))):
        path.write_bytes(bad)  # truncated, garbage, or another model's graph
        rebuilt = OnnxEnsemble(small)
        assert not rebuilt.from_cache
        assert torch.allclose(rebuilt.member_probabilities(x), want, atol=1e-4)
        assert OnnxEnsemble(small).from_cache  # the entry was rewritten
    assert not list(path.parent.glob("*.tmp"))


def test_onnx_cache_keeps_the_most_recently_used_graphs(small, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = tmp_path / "digitrec" / "onnx"
    directory.mkdir(parents=True)
    for i in range(fast_module.CACHE_ENTRIES + 3):  # graphs of older weights, oldest first
        stale = directory / f"{i:064x}.onnx"
        stale.write_bytes(b"old graph")
        os.utime(stale, (1_000_000 + i, 1_000_000 + i))
    os.utime(directory / f"{0:064x}.onnx")  # the oldest was just used
    current = OnnxEnsemble(small).cache_path
    kept = {p.name for p in directory.glob("*.onnx")}
    assert len(kept) == fast_module.CACHE_ENTRIES
    assert current.name in kept and f"{0:064x}.onnx" in kept
    assert f"{1:064x}.onnx" not in kept  # the least recently used went first


def test_onnx_cache_key_follows_the_architecture_and_weights(small):
    key = onnx_cache_key(small)
    same = copy.deepcopy(small)
    assert onnx_cache_key(same) == key
    with torch.no_grad():
        next(same.parameters()).add_(1e-3)
    assert onnx_cache_key(same) != key
    folded = Ensemble({n: fold_batchnorm(m) for n, m in small.members.items()})
    assert onnx_cache_key(folded) != key


def test_an_unusable_cache_directory_is_skipped(small, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    onnx = OnnxEnsemble(small)
    assert not onnx.from_cache and not onnx.cache_path.exists()


def test_fold_batchnorm_removes_bn_and_dropout_and_keeps_outputs(test_images):
    model = _trained_like("vgg8", test_images[:128])
    folded = fold_batchnorm(model)
    kinds = {type(m).__name__ for m in folded.modules()}
    assert not kinds & {"BatchNorm1d", "BatchNorm2d", "Dropout"}
    x = to_tensor(test_images[:64])
    with torch.inference_mode():
        assert torch.allclose(folded(x), model(x), atol=1e-4)


def test_recognizer_runs_the_fast_path(ensemble, test_images):
    from digitrec.recognizer import Recognizer
    recognizer = Recognizer(ensemble, {n: {} for n in ensemble.members}, threshold=0.8)
    assert isinstance(recognizer.backend, OnnxEnsemble)  # the default backend
    got = [p.best_guess for p in recognizer.classify(test_images[:100])]
    want = predict_proba(ensemble, test_images[:100]).argmax(1).tolist()
    assert got == want


def test_train_fast_runs_and_the_cli_writes_a_model_card(mnist, tmp_path):
    result = train_fast(epochs=1, limit=512, threads=1, progress=False)
    card = result.card
    assert card["recipe"] == "fast" and card["hyperparameters"]["limit"] == 512
    assert 0 <= card["test_accuracy"] <= 1 and card["time_to_test_accuracy_seconds"] > 0
    save_model(result.model, tmp_path, "fastnet", card)
    written = json.loads((tmp_path / "fastnet.json").read_text())
    assert written["architecture"] == "fastnet" and "command" in written

    from digitrec.cli import main
    assert main(["train", "--fast", "--limit", "256", "--threads", "1",
                 "--out", str(tmp_path / "cli")]) == 0
    cli_card = json.loads((tmp_path / "cli" / "fastnet.json").read_text())
    assert cli_card["recipe"] == "fast" and cli_card["command"].startswith("digitrec")
    assert (tmp_path / "cli" / "fastnet.safetensors").exists()
