"""Weight interpolation (WiSE-FT): the ends are the two models, the middle is the average, the
inputs are left alone, and `choose_alpha` walks back toward the base until held-out accuracy
is kept."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import weights_dir

from digitrec.models import load_ensemble
from digitrec.training.interpolate import GRID, choose_alpha, interpolate, mix_states


@pytest.fixture(scope="module")
def base():
    return load_ensemble(weights_dir())[0]


def _damaged(ensemble, scale: float):
    """A copy whose every floating weight is scaled (a model that has forgotten MNIST)."""
    damaged = copy.deepcopy(ensemble)
    with torch.no_grad():
        for p in damaged.parameters():
            p.mul_(scale)
    return damaged


def test_mix_states_ends_middle_and_counters():
    base = {"w": torch.zeros(3), "n": torch.tensor(5)}
    tuned = {"w": torch.full((3,), 2.0), "n": torch.tensor(9)}
    assert torch.equal(mix_states(base, tuned, 0)["w"], base["w"])
    assert torch.equal(mix_states(base, tuned, 1)["w"], tuned["w"])
    assert torch.equal(mix_states(base, tuned, 0.25)["w"], torch.full((3,), 0.5))
    assert mix_states(base, tuned, 0.25)["n"].item() == 9  # BatchNorm's step counter: tuned's
    with pytest.raises(ValueError):
        mix_states(base, {"w": tuned["w"]}, 0.5)


def test_interpolate_makes_a_new_ensemble(base):
    tuned = _damaged(base, 0.5)
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    half = interpolate(base, tuned, 0.5)
    name = next(iter(base.members))
    key = next(k for k, v in base.members[name].state_dict().items() if v.is_floating_point())
    expected = 0.5 * (base.members[name].state_dict()[key] + tuned.members[name].state_dict()[key])
    assert torch.allclose(half.members[name].state_dict()[key], expected)
    assert all(torch.equal(v, before[k]) for k, v in tuned.state_dict().items())


def test_choose_alpha_walks_back_until_accuracy_is_kept(base, mnist):
    images, labels = mnist.split("val")
    images, labels = images[:300], labels[:300]
    alpha, table = choose_alpha(base, copy.deepcopy(base), images, labels, max_drop_pt=0.1)
    assert alpha == 1.0 and [row["alpha"] for row in table] == [0.0, 1.0]
    # weights scaled by 0.2 read nothing; a quarter of the way there still reads MNIST
    alpha, table = choose_alpha(base, _damaged(base, 0.2), images, labels, max_drop_pt=1.0)
    assert [row["alpha"] for row in table][0] == 0.0 and alpha < 1.0
    assert table[1]["accuracy"] < table[0]["accuracy"] - 0.01  # alpha 1 lost accuracy
    assert table[-1]["alpha"] == alpha
    assert alpha == GRID[-1] or table[-1]["accuracy"] >= table[0]["accuracy"] - 0.01
