"""Training as several ranks (torchrun / DistributedDataParallel, gloo on 127.0.0.1): the same
result as one process with the same global batch, one set of files, the world size on the card;
a rank killed mid-epoch restarts the job from the last checkpoint."""

from __future__ import annotations

import json
import sys

import torch
from conftest import run_ranks

from digitrec.cli import main
from digitrec.training.distributed import Context

# 79 steps an epoch of 128 images (64 a rank), 2 epochs: far enough past the steep start that the
# test accuracy of a run moves by a few hundredths of a point, not by whole points.
SLICE = ["--model", "fastnet", "--no-augment", "--limit", "10000", "--epochs", "2"]


def test_the_ranks_share_out_each_single_process_batch():
    order = torch.randperm(1001, generator=torch.Generator().manual_seed(0))
    ranks = [Context(rank=r, world_size=2).shard(order) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 501  # padded, as DistributedSampler pads
    padded = torch.cat([order, order[:1]])  # the last batch: 105 images and the first again
    for i in range(8):  # batch i of both ranks together: batch i of one process (128 = 2 x 64)
        together = torch.cat([r[i * 64:(i + 1) * 64] for r in ranks])
        assert sorted(together.tolist()) == sorted(padded[i * 128:(i + 1) * 128].tolist())
    assert Context().shard(order) is order and Context(world_size=2).per_rank_batch(128) == 64


def test_torchrun_two_ranks_match_one_process(mnist_dir, tmp_path):
    single, ranks, cwd = tmp_path / "single", tmp_path / "ranks", tmp_path / "cwd"
    cwd.mkdir()
    assert main(["train", *SLICE, "--threads", "1", "--out", str(single)]) == 0
    done = run_ranks(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
         "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", "test",
         "-m", "digitrec", "train", *SLICE, "--out", str(ranks)], cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((d / "fastnet.json").read_text()) for d in (single, ranks))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert abs(one["test_accuracy"] - two["test_accuracy"]) <= 0.002
    for a, b in zip(one["history"], two["history"], strict=True):  # the loss curves
        assert a["steps"] == b["steps"] and abs(a["train_loss"] - b["train_loss"]) < 0.03
    files = sorted(p.relative_to(d).as_posix() for d in (single, ranks) for p in d.rglob("*"))
    assert files == sorted(2 * [p.relative_to(single).as_posix() for p in single.rglob("*")])
    assert not list(cwd.iterdir())  # nothing written elsewhere
    assert done.stderr.count("test accuracy") == 1  # rank 0 alone reports


def test_a_killed_rank_restarts_the_job_from_the_last_checkpoint(mnist_dir, tmp_path):
    out = tmp_path / "out"
    # rank 1 dies (os._exit) after step 14 of 32 on the first attempt; checkpoint 10 survives
    done = run_ranks(
        [sys.executable, "-m", "digitrec", "train", "--fast", "--limit", "2000", "--epochs",
         "2", "--nproc", "2", "--max-restarts", "1", "--checkpoint-every", "10",
         "--out", str(out)], DIGITREC_FAULT_STEP="14", DIGITREC_FAULT_RANK="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from step 10 of 32" in done.stderr
    from digitrec.models import load_model
    model, card = load_model(out / "fastnet.safetensors")
    assert card["world_size"] == 2 and card["history"][-1]["steps"] == 32
    assert card["test_accuracy"] > 0.5 and [h["epoch"] for h in card["history"]] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints" / "fastnet-fast").iterdir()) == [
        "step-000000032.json", "step-000000032.safetensors"]


def test_without_restarts_a_killed_rank_fails_the_command(mnist_dir, tmp_path):
    done = run_ranks(
        [sys.executable, "-m", "digitrec", "train", "--fast", "--limit", "512", "--epochs", "1",
         "--nproc", "2", "--out", str(tmp_path)], DIGITREC_FAULT_STEP="2")
    assert done.returncode == 1 and "restarts allowed: failed" in done.stderr
    assert not (tmp_path / "fastnet.safetensors").exists()
