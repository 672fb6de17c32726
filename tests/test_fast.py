"""Fast paths agree with the reference: the optimised ensemble predicts exactly what the eager
Ensemble predicts on 1,000 MNIST test images, and `train --fast` runs and writes a model card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from digitrec.fast import fold_batchnorm, optimize
from digitrec.models import BUNDLED_DIR, Ensemble, create_model, load_ensemble, save_model
from digitrec.train import predict_proba, to_tensor, train_fast

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


def test_optimized_ensemble_predicts_exactly_like_the_reference(ensemble, test_images):
    reference = predict_proba(ensemble, test_images)
    fast = predict_proba(optimize(ensemble), test_images)
    assert np.array_equal(fast.argmax(1), reference.argmax(1))
    assert np.abs(fast - reference).max() < 1e-4


def test_optimized_members_match_each_reference_member(ensemble, test_images):
    x = to_tensor(test_images[:200])
    with torch.inference_mode():
        reference = ensemble.member_probabilities(x)
        fast = optimize(ensemble).member_probabilities(x)
    assert fast.shape == reference.shape
    assert torch.equal(fast.argmax(-1), reference.argmax(-1))
    assert float((fast - reference).abs().max()) < 1e-4


def test_single_image_path_matches_batch_path(ensemble, test_images):
    fast = optimize(ensemble)
    with torch.inference_mode():
        batch = fast(to_tensor(test_images[:8]))
        singles = torch.cat([fast(to_tensor(test_images[i:i + 1])) for i in range(8)])
    assert torch.allclose(batch, singles, atol=1e-5)


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
    assert recognizer.fast is not recognizer.ensemble
    got = [p.digit for p in recognizer.classify(test_images[:100])]
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
