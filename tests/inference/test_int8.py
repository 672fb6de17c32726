"""int8 inference: the bundled calibration belongs to the bundled weights, the int8 graph agrees
with the reference on 99.9% of 1,000 test images and scores at least 99.65% on the whole test
set, it is cached like the fp32 graph, and bad or stale calibrations are refused clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from digitrec.cli import main
from digitrec.errors import ConfigError, ModelError, QuantizationError
from digitrec.inference import create_backend as optimize
from digitrec.inference import int8 as quantize
from digitrec.inference.int8 import INT8_FILE, Int8Ensemble, load_int8_ranges, quantized_graph
from digitrec.inference.onnx_backend import OnnxEnsemble, onnx_bytes
from digitrec.models import BUNDLED_DIR, create_model, load_ensemble, save_model, to_tensor
from digitrec.recognizer import Recognizer
from digitrec.training.loop import predict_proba


@pytest.fixture(scope="module")
def bundled():
    """The bundled ensemble and its int8 calibration."""
    ensemble, _ = load_ensemble()
    calibration = load_int8_ranges(BUNDLED_DIR, ensemble)
    assert calibration is not None, f"the bundled weights carry no {INT8_FILE}"
    return ensemble, calibration


@pytest.fixture(scope="module")
def int8(bundled) -> OnnxEnsemble:
    return Int8Ensemble(bundled[0], bundled[1])


def _predict(model, images: np.ndarray) -> np.ndarray:
    return predict_proba(model, images, batch_size=500).argmax(axis=1)


def test_bundled_calibration_meets_the_bar(bundled):
    _, calibration = bundled
    assert quantize.good_enough(calibration)
    assert calibration["members"] == list(bundled[0].members)


def test_int8_agrees_with_the_reference_on_1000_test_images(bundled, int8, mnist):
    images = mnist.test_images[:1000]
    agreement = (_predict(int8, images) == _predict(bundled[0], images)).mean()
    assert agreement >= 0.999


def test_int8_accuracy_is_what_its_card_says(bundled, int8, mnist):
    accuracy = float((_predict(int8, mnist.test_images) == mnist.test_labels).mean())
    assert accuracy >= quantize.MIN_ACCURACY
    assert accuracy == pytest.approx(bundled[1]["test_accuracy"], abs=0.0005)


def test_int8_probabilities_are_probabilities(int8, mnist):
    p = int8.member_probabilities(to_tensor(mnist.test_images[:50]))
    assert p.shape == (len(int8.members), 50, 10)
    assert torch.allclose(p.sum(dim=2), torch.ones(p.shape[:2]), atol=1e-5)  # float softmax
    assert int8.precision == "int8"


def test_int8_graph_is_cached_and_a_bad_entry_rebuilt(bundled, monkeypatch):
    ensemble, calibration = bundled
    first = Int8Ensemble(ensemble, calibration)
    entries = list(first.cache_path.parent.glob("*.int8.onnx"))
    assert entries
    monkeypatch.setattr(quantize, "quantized_graph", lambda *a: pytest.fail("re-quantised"))
    Int8Ensemble(ensemble, calibration)  # from the cache
    monkeypatch.undo()
    for entry in entries:
        entry.write_bytes(b"not a graph")
    rebuilt = Int8Ensemble(ensemble, calibration)
    assert rebuilt.precision == "int8"
    assert all(entry.read_bytes() != b"not a graph" for entry in entries)


def test_stale_or_broken_calibrations_are_refused(bundled, tmp_path):
    ensemble, calibration = bundled
    other = create_model("cnnbn").eval()
    directory = tmp_path / "w"
    save_model(other, directory, "cnnbn", {})
    assert load_int8_ranges(directory, load_ensemble(directory)[0]) is None
    shutil.copy(BUNDLED_DIR / INT8_FILE, directory / INT8_FILE)
    with pytest.raises(QuantizationError, match="other weights"):
        load_int8_ranges(directory, load_ensemble(directory)[0])
    (directory / INT8_FILE).write_text("{not json")
    with pytest.raises(QuantizationError, match="no usable int8 ranges"):
        load_int8_ranges(directory, load_ensemble(directory)[0])
    with pytest.raises(QuantizationError, match="no usable"):
        Recognizer.load(directory, backend="int8")


def test_ranges_for_another_graph_are_refused(bundled):
    ensemble, calibration = bundled
    renamed = {**calibration, "ranges": {**calibration["ranges"], "data": {
        f"/elsewhere{name}": value for name, value in calibration["ranges"]["data"].items()}}}
    with pytest.raises(QuantizationError, match="does not have"):
        quantized_graph(onnx_bytes(ensemble), renamed)


def test_a_graph_that_misses_its_probe_is_refused(bundled):
    ensemble, calibration = bundled
    wrong = {**calibration, "probe_output": (np.asarray(calibration["probe_output"]) * 0.5)
             .tolist()}
    with pytest.raises(QuantizationError, match="recorded outputs"):
        Int8Ensemble(ensemble, wrong, cache=False)


def test_int8_backend_needs_a_calibration(bundled, tmp_path):
    with pytest.raises(ConfigError, match="int8 ranges"):
        optimize(bundled[0], "int8")
    directory = tmp_path / "w"
    save_model(create_model("cnnbn").eval(), directory, "cnnbn", {})
    with pytest.raises(ModelError, match="digitrec quantize"):
        Recognizer.load(directory, backend="int8")


def test_recognizer_runs_int8_on_request(bundled, mnist):
    recognizer = Recognizer.load(backend="int8")
    assert recognizer.inference == "onnxruntime int8"
    assert Recognizer.load().inference == "onnxruntime int8"  # what the app serves
    assert Recognizer.load(backend="onnx").inference == "onnxruntime fp32"
    digits = [p.best_guess for p in recognizer.classify(mnist.test_images[:20])]
    assert digits == mnist.test_labels[:20].tolist()


def test_quantize_command_writes_a_calibration_that_loads(tmp_path, mnist_dir, capsys):
    directory = tmp_path / "w"
    shutil.copytree(BUNDLED_DIR, directory, ignore=shutil.ignore_patterns("zoo", INT8_FILE))
    assert main(["quantize", "--weights", str(directory), "--images", "200"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    written = json.loads((directory / INT8_FILE).read_text())
    assert written["calibration_images"] == "the first 200 MNIST training images"
    recognizer = Recognizer.load(directory, backend="int8")
    assert recognizer.inference == "onnxruntime int8"


def test_quantize_command_refuses_a_poor_model(tmp_path, mnist_dir, capsys):
    directory = tmp_path / "w"
    save_model(create_model("cnnbn").eval(), directory, "cnnbn", {})  # untrained: ~10%
    assert main(["quantize", "--weights", str(directory), "--images", "100"]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert not (directory / INT8_FILE).exists()
    assert main(["quantize", "--weights", str(directory), "--images", "0"]) == 2
