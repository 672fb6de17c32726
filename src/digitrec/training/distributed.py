"""Training on several processes (torchrun / DistributedDataParallel), kept small: the process
group's start and end, who this rank is, the rank's share of the data, all-reduced metrics, and
`launch` (what `--nproc N` runs: torchrun's elastic agent, in process).

One process is the special case of it all: `Context()` (world size 1) does no communication, so
the loop (`loop.fit`) reads the same with one rank or many. Under torchrun (`WORLD_SIZE` > 1 in
the environment) `init()` joins the group: gloo on CPU, nccl where CUDA is present. Anything that
trains (`train`, `train-ensemble`, a later `finetune`) needs only `init()`, `Context` and
`teardown()`."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from digitrec.config import read

# Test hook: rank DIGITREC_FAULT_RANK (default 1) dies (os._exit) after step DIGITREC_FAULT_STEP
# on the first attempt only (torchrun's restart count 0): a killed rank, reproducibly.
_HOOK = read()
FAULT_STEP, FAULT_RANK = _HOOK.fault_step, _HOOK.fault_rank


@dataclass(frozen=True)
class Context:
    """Where this process stands among the ranks of one job (a single process by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes files, logs and draws progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank (collectives are real)."""
        return self.world_size > 1

    def per_rank_batch(self, batch_size: int) -> int:
        """This rank's share of the global batch; ValueError when it does not divide evenly."""
        if batch_size % self.world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the world size "
                             f"{self.world_size}")
        return batch_size // self.world_size

    def rank_seed(self, seed: int) -> int:
        """A seed of this rank's own (augmentation, dropout); `seed` itself on rank 0."""
        return seed + 1_000_003 * self.rank

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's indices of a global permutation, as DistributedSampler deals them: padded
        with its start to a multiple of the world size, then every world_size-th from `rank`.
        Batch i of every rank together is batch i of the single-process run."""
        if not self.distributed:
            return order
        padded = -(-len(order) // self.world_size) * self.world_size
        if padded > len(order):
            order = torch.cat([order, order[:padded - len(order)]])
        return order[self.rank::self.world_size]

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model DistributedDataParallel-wrapped (its gradients averaged), or as it is."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.local_rank] if self.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def mean(self, *values: torch.Tensor) -> list[float]:
        """Scalars averaged over the ranks (each rank's own when single)."""
        if not self.distributed:
            return [v.item() for v in values]
        stacked = torch.stack([v.detach().float().reshape(()) for v in values]).to(self.device)
        dist.all_reduce(stacked)
        return (stacked / self.world_size).tolist()

    def sum(self, values: list[float]) -> list[float]:
        """Numbers summed over the ranks."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-shape tensor, in rank order (CPU)."""
        if not self.distributed:
            return [tensor]
        local = tensor.to(self.device)
        out = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(out, local)
        return [t.cpu() for t in out]

    def broadcast_int(self, value: int) -> int:
        """Rank 0's integer, on every rank."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(tensor, 0)
        return int(tensor.item())

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer.data, 0)

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
        if self.distributed:
            dist.barrier()

    def fault_point(self, step: int, restart_count: int | None = None) -> None:
        """The test hook: die as FAULT_STEP / FAULT_RANK say, on the first attempt only."""
        if FAULT_STEP and step == FAULT_STEP and self.rank == FAULT_RANK:
            restarts = restart_count if restart_count is not None else restart_count_now()
            if restarts == 0:
                os._exit(17)


@torch.inference_mode()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, ctx: Context,
             batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` over all images, each rank scoring its share (all-reduced)."""
    from digitrec.models import to_tensor
    model.eval()
    ctx.sync_buffers(model)
    mine = slice(ctx.rank, None, ctx.world_size)
    x, y = images[mine], labels[mine]
    hits = 0
    for start in range(0, len(x), batch_size):
        logits = model(to_tensor(x[start:start + batch_size]).to(ctx.device))
        hits += int((logits.argmax(1).cpu().numpy() == y[start:start + batch_size]).sum())
    total_hits, total = ctx.sum([hits, len(x)])
    return total_hits / total if total else 0.0


_CONTEXT: Context | None = None


def under_torchrun() -> bool:
    """Started by torchrun (or `launch`): its environment is set."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def restart_count_now() -> int:
    """How many times torchrun has restarted this job (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0)


def init() -> Context:
    """This process's Context: joins the process group when torchrun started several ranks
    (gloo, or nccl with CUDA), a single-process Context otherwise. Idempotent."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world_size = int(os.environ.get("WORLD_SIZE") or 1)
    if world_size <= 1:
        _CONTEXT = Context()
        return _CONTEXT
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK") or 0)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend, device = "nccl", f"cuda:{local_rank}"
    else:
        backend, device = "gloo", "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, store=_store(rank, world_size),
                                rank=rank, world_size=world_size)
    _CONTEXT = Context(rank=rank, world_size=world_size, local_rank=local_rank, device=device)
    return _CONTEXT


def _store(rank: int, world_size: int) -> dist.Store:
    """The job's key-value store (torchrun's MASTER_ADDR:MASTER_PORT: the agent's own store, or
    one rank 0 hosts) under a prefix of this attempt's own: after a restart, keys the dead
    attempt left there (its ranks' old addresses) must not be read as the new ones'."""
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=rank == 0 and not agent_hosts,
                          multi_tenant=not agent_hosts)
    return dist.PrefixStore(f"digitrec/attempt-{restart_count_now()}", store)


def current() -> Context:
    """The Context `init()` made, or a single-process one when it was not called."""
    return _CONTEXT or Context()


def teardown() -> None:
    """Leave the process group (when one was joined)."""
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None


def launch(entrypoint: Callable, args: tuple, nproc: int, max_restarts: int = 0) -> dict:
    """Run `entrypoint(*args)` as `nproc` ranks on this machine under torchrun's elastic agent
    (a c10d rendezvous on a free local port, like `torchrun --standalone`), restarting every
    rank up to `max_restarts` times when one fails; each rank's return value by rank."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=str(uuid.uuid4()), rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=max_restarts,
                          start_method="spawn")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    agent_log = logging.getLogger("torch.distributed.elastic.multiprocessing.api")
    if not any(isinstance(f, _ExpectedExits) for f in agent_log.filters):
        agent_log.addFilter(_ExpectedExits())
    return elastic_launch(config, entrypoint)(*args)


class _ExpectedExits(logging.Filter):
    """Drops the agent's traceback for a rank that exited with a DigitrecError's status (2-4):
    the rank has printed its one-line error already. A crash (any other status, a Python
    exception) is still logged with its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return getattr(error, "exit_code", None) not in EXPECTED_EXIT_CODES


EXPECTED_EXIT_CODES = (2, 3, 4)  # digitrec.errors: usage/data, input, model
