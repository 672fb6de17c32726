"""Checkpoints: safetensors + a JSON sidecar naming the tensors' SHA-256, written atomically; a
torn or partial one is never loaded; a resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import json

import pytest
import torch

from digitrec.cli import main
from digitrec.errors import UsageError
from digitrec.training import checkpoint
from digitrec.training.checkpoint import Policy
from digitrec.training.distributed import Context
from digitrec.training.recipes import FAST, TRAIN


def _write(directory, step: int, value: float = 1.0):
    tensors = {"w": torch.full((64,), value), "n": torch.arange(3)}
    return checkpoint.save(directory, step, tensors, {"note": f"step {step}"})


def test_optimizer_and_scheduler_states_round_trip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=10)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    schedule.step()
    tensors: dict = {}
    meta = {"optimizer": checkpoint.state_to_tensors(optimizer.state_dict(), "opt", tensors),
            "scheduler": checkpoint.state_to_tensors(schedule.state_dict(), "sched", tensors)}
    checkpoint.save(tmp_path, 1, tensors, meta)
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.tmp"))
    back = checkpoint.load(tmp_path, 1)
    opt = checkpoint.tensors_to_state(json.loads(json.dumps(back.meta["optimizer"])), back.tensors)
    again = torch.optim.AdamW(model.parameters(), lr=1e-2)
    again.load_state_dict(opt)
    original = optimizer.state_dict()
    assert again.state_dict()["param_groups"] == original["param_groups"]
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], original["state"][0]["exp_avg"])
    restored = checkpoint.tensors_to_state(back.meta["scheduler"], back.tensors)
    assert restored == schedule.state_dict()


def test_only_the_last_checkpoint_is_kept_and_loaded(tmp_path):
    _write(tmp_path, 5, 5.0)
    _write(tmp_path, 10, 10.0)
    assert checkpoint.steps(tmp_path) == [10]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000010.json",
                                                          "step-000000010.safetensors"]
    found = checkpoint.latest(tmp_path)
    assert found.step == 10 and float(found.tensors["w"][0]) == 10.0


@pytest.mark.parametrize("damage", ["no sidecar", "no tensors", "truncated tensors",
                                    "wrong hash", "half-written sidecar", "other tensors"])
def test_a_torn_or_partial_checkpoint_is_never_loaded(tmp_path, damage, capsys):
    good, torn = tmp_path / "good", tmp_path / "torn"
    _write(good, 5, 5.0)
    _write(torn, 10, 10.0)
    for path in torn.iterdir():  # checkpoint 10, torn, beside the good checkpoint 5
        path.rename(good / path.name)
    sidecar, weights = good / "step-000000010.json", good / "step-000000010.safetensors"
    if damage == "no sidecar":
        sidecar.unlink()
    elif damage == "no tensors":
        weights.unlink()
    elif damage == "truncated tensors":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "wrong hash":
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "sha256": "0" * 64}))
    elif damage == "half-written sidecar":
        sidecar.write_text(sidecar.read_text()[:40])
    elif damage == "other tensors":  # a later write of the tensors, its sidecar not yet renamed
        weights.write_bytes((good / "step-000000005.safetensors").read_bytes())
    found = checkpoint.latest(good)
    assert found.step == 5 and float(found.tensors["w"][0]) == 5.0
    if damage != "no sidecar":
        assert "checkpoint skipped" in capsys.readouterr().err
        with pytest.raises(ValueError):
            checkpoint.load(good, 10)


def test_leftover_temporary_files_are_ignored_and_cleared(tmp_path):
    (tmp_path / ".step-000000007.safetensors.123.tmp").write_bytes(b"partial")
    (tmp_path / ".step-000000007.json.123.tmp").write_text("{")
    assert checkpoint.latest(tmp_path) is None
    _write(tmp_path, 3)
    checkpoint.clear(tmp_path)
    assert list(tmp_path.iterdir()) == []


def _fit(images, labels, recipe, policy, fault_at=None, monkeypatch=None):
    from digitrec.models import create_model
    from digitrec.training.loop import fit

    class Crash(Exception):
        pass

    if fault_at is not None:
        def fault_point(self, step, restart_count=None):
            if step == fault_at:
                raise Crash
        monkeypatch.setattr(Context, "fault_point", fault_point)
    torch.manual_seed(recipe.seed)
    model = create_model(recipe.architecture)
    try:
        history = fit(model, images, labels, recipe, progress=False, checkpoints=policy)
    except Crash:
        return None, None
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()
    return model, history


@pytest.mark.parametrize("every", [5, None])
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(mnist, tmp_path,
                                                                    monkeypatch, every):
    images, labels = mnist.split("train")
    images, labels = images[:512], labels[:512]  # 8 steps an epoch, 16 in all
    recipe = TRAIN.replace(architecture="cnnbn", epochs=2, batch_size=64, seed=3,
                           elastic=True)  # augmentation and dropout: every RNG matters
    whole, whole_history = _fit(images, labels, recipe, Policy(tmp_path / "a", every=every))
    crash_at = 7 if every else 11  # after checkpoint 5 / after the first epoch's checkpoint
    assert _fit(images, labels, recipe, Policy(tmp_path / "b", every=every), crash_at,
                monkeypatch)[0] is None
    assert checkpoint.steps(tmp_path / "b") == [5 if every else 8]
    resumed, history = _fit(images, labels, recipe,
                            Policy(tmp_path / "b", every=every, resume=True))
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in whole_history]
    assert checkpoint.steps(tmp_path / "b") == [16]  # the final one, to skip a finished round


def test_resuming_another_runs_checkpoint_is_refused(mnist, tmp_path):
    images, labels = mnist.split("train")
    recipe = FAST.replace(epochs=1, batch_size=64)
    _fit(images[:128], labels[:128], recipe, Policy(tmp_path))
    with pytest.raises(UsageError, match="another run"):
        _fit(images[:128], labels[:128], recipe.replace(lr=0.1), Policy(tmp_path, resume=True))


def test_cli_resume_continues_and_bad_scaling_flags_are_usage_errors(mnist, tmp_path, capsys):
    flags = ["train", "--fast", "--limit", "256", "--epochs", "2", "--threads", "1",
             "--out", str(tmp_path)]
    assert main([*flags, "--checkpoint-every", "3"]) == 0
    assert checkpoint.steps(tmp_path / "checkpoints" / "fastnet-fast") == [4]
    capsys.readouterr()
    assert main([*flags, "--checkpoint-every", "3", "--resume"]) == 0
    assert "resumed from step 4 of 4" in capsys.readouterr().err
    for bad in (["--nproc", "0"], ["--max-restarts", "1"], ["--nproc", "2", "--max-restarts",
                                                             "-1"],
                ["--checkpoint-every", "0"], ["--nproc", "3"]):  # 128 / 3 ranks
        assert main([*flags, *bad]) == 2, bad
        assert "digitrec train: error:" in capsys.readouterr().err
