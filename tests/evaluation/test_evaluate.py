"""Evaluation: metrics arithmetic, the bundled ensemble's accuracy on the real test set, the
`evaluate --json` contract, PNG reports and threshold calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.data.mnist import load_mnist
from digitrec.evaluation.calibrate import calibrate_threshold
from digitrec.evaluation.evaluate import evaluate_recognizer, metrics
from digitrec.models import BUNDLED_DIR
from digitrec.recognizer import Recognizer


def test_metrics_by_hand():
    labels = np.array([0, 0, 1, 1, 2])
    probabilities = np.eye(10)[[0, 1, 1, 1, 0]]
    m = metrics(probabilities, labels)
    assert m.accuracy == pytest.approx(0.6)
    assert m.misclassified == [1, 4]
    assert m.confusion[0, 1] == 1 and m.confusion[2, 0] == 1 and m.confusion.sum() == 5
    assert m.recall[:3] == [0.5, 1.0, 0.0] and m.precision[:3] == [0.5, pytest.approx(2 / 3), 0.0]


@pytest.fixture(scope="module")
def bundled(mnist_dir):
    return evaluate_recognizer(Recognizer.load(), *load_mnist(mnist_dir).split("test"))


def test_bundled_ensemble_meets_the_accuracy_target(bundled, mnist_dir):
    """The ensemble's weights (fp32) meet the 99.70% target, and the int8 graph the app serves
    stays near them. The target is checked on fp32 because int8 kernels round differently from
    one CPU to another (a few test images on the ensemble, about 0.1 pt on a single member),
    while no fp32 prediction is within 8e-4 of a tie. Each member is a sanity floor: since
    stage 4 (docs/training.md) they trade a tenth of a point of MNIST for real writers
    (cnnbn 99.31%), and a broken member falls far lower."""
    assert len(bundled.labels) == 10000
    fp32 = evaluate_recognizer(Recognizer.load(backend="onnx"),
                               *load_mnist(mnist_dir).split("test"))
    assert fp32.ensemble.accuracy >= 0.9970
    assert bundled.ensemble.accuracy >= 0.9965  # quantize.MIN_ACCURACY: the bar for int8
    assert abs(fp32.ensemble.accuracy - bundled.ensemble.accuracy) <= 0.001
    for name, member in fp32.members.items():
        assert member.accuracy >= 0.993, name


def test_bundled_weights_are_small_and_carded():
    files = list(BUNDLED_DIR.glob("*.safetensors"))
    assert len(files) >= 3
    assert sum(f.stat().st_size for f in files) <= 10 * 1024 * 1024
    for f in files:
        card = json.loads(f.with_suffix(".json").read_text())
        assert card["command"].startswith("digitrec train") and card["training_seconds"] > 0
    calibration = json.loads((BUNDLED_DIR / "calibration.json").read_text())
    # chosen on MNIST validation shifted as new writers shift it (digitrec calibrate's default)
    assert calibration["split"].startswith("MNIST validation") and calibration["n"] > 10000
    assert 0.3 <= calibration["threshold"] < 1.0 and calibration["abstention_rate"] < 0.03


def test_evaluate_json_contract(mnist_dir, capsys):
    assert main(["evaluate", "--json", "--limit", "500"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 500
    assert 0.95 <= out["ensemble"]["accuracy"] <= 1
    assert set(out["members"]) == {p.stem for p in BUNDLED_DIR.glob("*.safetensors")}
    assert all(0 <= m["accuracy"] <= 1 for m in out["members"].values())
    assert np.array(out["ensemble"]["confusion"]).sum() == 500


def test_evaluate_report_writes_pngs(mnist_dir, tmp_path, capsys):
    assert main(["evaluate", "--limit", "300", "--report", str(tmp_path)]) == 0
    assert "ensemble" in capsys.readouterr().out
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_prefers_abstaining_on_low_confidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1000)
    confident = np.full((2, 1000, 10), 0.01)
    confident[:, np.arange(1000), labels] = 0.91
    confident[:, :50] = 0.1  # 50 uniform, useless predictions: abstaining is cheaper
    result = calibrate_threshold(confident, labels)
    assert 0.1 < result["threshold"] <= 0.91
    assert result["abstention_rate"] == pytest.approx(0.05)
    assert result["accepted_error_rate"] == 0.0


def test_risk_by_hand():
    from digitrec.evaluation.evaluate import risk
    labels = np.array([0, 1, 2, 3])
    p = np.full((2, 4, 10), 0.0)
    p[:, 0, 0] = 1.0  # sure and right
    p[:, 1, 1] = 0.9  # right, under a 0.95 threshold
    p[:, 1, 2] = 0.1
    p[0, 2, 2], p[1, 2, 5] = 1.0, 1.0  # the members disagree: mean 0.5 on 2 (right) and 5
    p[:, 3, 4] = 0.99  # sure and wrong
    p[:, 3, 3] = 0.01
    r = risk(p, labels, threshold=0.95)
    assert r["best_guess_accuracy"] == 0.75
    assert r["abstention_rate"] == 0.5  # images 1 and 2
    assert r["accuracy_when_answered"] == 0.5  # images 0 (right) and 3 (wrong)
    assert r["accuracy_at_90_coverage"] == 0.75  # 90% of 4 images rounds to all 4
    wide = risk(np.concatenate([p] * 5, axis=1), np.tile(labels, 5), threshold=0.95)
    assert wide["accuracy_at_90_coverage"] == pytest.approx(13 / 18)  # 2 of the 0.5s left out


def test_shifted_validation_adds_styles_and_pens_to_the_originals(mnist):
    from digitrec.evaluation.calibrate import shifted_validation
    from digitrec.training.styles import FRACTIONS
    images, labels = mnist.split("val")
    images, labels = images[:60], labels[:60]
    x, y = shifted_validation(images, labels, progress=False)
    styled = int(np.isin(labels, list(FRACTIONS)).sum())
    assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and len(x) == len(y)
    assert np.array_equal(x[:60], images) and np.array_equal(y[:60], labels)
    assert np.array_equal(y[60:60 + styled], labels[np.isin(labels, list(FRACTIONS))])
    assert not np.array_equal(x[60:60 + styled], images[np.isin(labels, list(FRACTIONS))])
    assert 60 + styled + 50 <= len(x) <= 60 + styled + 60  # nearly every redrawing has ink
    again, _ = shifted_validation(images, labels, progress=False)
    assert np.array_equal(x, again)  # seeded


def test_calibrate_writes_a_threshold_chosen_on_shifted_images(mnist_dir, tmp_path):
    import json

    from digitrec.cli import main
    assert main(["calibrate", "--out", str(tmp_path), "--data-dir", str(mnist_dir)]) == 0
    shifted = json.loads((tmp_path / "calibration.json").read_text())
    assert shifted["n"] > 10000 and "restyled" in shifted["split"]
    assert main(["calibrate", "--on", "validation", "--out", str(tmp_path),
                 "--data-dir", str(mnist_dir)]) == 0
    clean = json.loads((tmp_path / "calibration.json").read_text())
    assert clean["n"] == 5000 and clean["split"].startswith("validation")
    assert 0.3 <= clean["threshold"] <= shifted["threshold"] < 1
