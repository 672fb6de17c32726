"""Registry, shapes, safetensors persistence and the averaging ensemble."""

from __future__ import annotations

import json

import pytest
import torch

from digitrec.errors import ModelError
from digitrec.models import (
    Ensemble,
    create_model,
    list_models,
    load_ensemble,
    load_model,
    save_model,
)


def test_registry_has_the_seed_designs():
    assert {"cnn1", "cnnbn", "cnn5"} <= set(list_models())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name", list_models())
def test_model_maps_batch_to_ten_logits(name):
    model = create_model(name).eval()
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("half", [False, True])
def test_safetensors_round_trip_gives_identical_outputs(tmp_path, half):
    torch.manual_seed(0)
    model = create_model("cnnbn")
    model.train()
    model(torch.randn(16, 1, 28, 28))  # move the BatchNorm running statistics off their init
    model.eval()
    if half:  # what fp16 storage keeps is exactly what a half round trip keeps
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    save_model(model, tmp_path, "m", {"note": "test"}, half=half)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["architecture"] == "cnnbn" and card["note"] == "test"
    loaded, _ = load_model(tmp_path / "m.safetensors")
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_ensemble_probabilities_sum_to_one_and_average_members(tmp_path):
    torch.manual_seed(1)
    members = {name: create_model(name).eval() for name in ("cnn1", "cnnbn")}
    ensemble = Ensemble(members).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        p = ensemble(x)
        by_hand = (members["cnn1"](x).softmax(1) + members["cnnbn"](x).softmax(1)) / 2
    torch.testing.assert_close(p.sum(1), torch.ones(4))
    torch.testing.assert_close(p, by_hand)
    for name, model in members.items():
        save_model(model, tmp_path, name, {})
    loaded, cards = load_ensemble(tmp_path)
    assert list(loaded.members) == ["cnn1", "cnnbn"] and set(cards) == {"cnn1", "cnnbn"}
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), p)


def test_empty_weights_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no \\*.safetensors models"):
        load_ensemble(tmp_path)


def test_a_damaged_weights_file_is_a_model_error(tmp_path):
    save_model(create_model("cnn1"), tmp_path, "cnn1", {})
    (tmp_path / "cnn1.safetensors").write_bytes(b"\xff" * 16)  # a header length of 2^64 - 1
    with pytest.raises(ModelError, match="cannot load model cnn1"):
        load_ensemble(tmp_path)
