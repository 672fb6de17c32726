"""Training checkpoints on disk, never a pickle: STEP's tensors (model, optimizer state, RNG
states, the epoch's batch order) in `step-STEP.safetensors`, everything else (scheduler, the
optimizer's settings, history, the recipe) in the JSON sidecar `step-STEP.json`.

Both are written atomically (a temporary file, then os.replace), the sidecar last, naming the
tensor file's SHA-256: a pair torn by a kill (no sidecar, a truncated or replaced tensor file, a
half-written sidecar) fails the check and is never loaded; `latest` falls back to the last
complete one. `state_to_tensors` / `tensors_to_state` split any state_dict (optimizer,
scheduler) into the two. Used by `loop.fit`; any other training command can use it as it is."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from digitrec.data.mnist import sha256_file

FORMAT = 1
_NAME = re.compile(r"^step-(\d{9})\.json$")


@dataclass
class Checkpoint:
    """A checkpoint read back: its step, tensors, and sidecar."""

    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict


def state_to_tensors(state: object, prefix: str, tensors: dict[str, torch.Tensor]) -> object:
    """JSON-ready copy of `state` whose tensors move into `tensors` (keys under `prefix`),
    leaving {"__tensor__": key}; int dict keys and tuples are marked so they come back."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        encoded = {str(k): state_to_tensors(v, f"{prefix}.{k}", tensors) for k, v in state.items()}
        if state and all(isinstance(k, int) for k in state):
            return {"__int_keys__": encoded}
        return encoded
    if isinstance(state, tuple):
        return {"__tuple__": [state_to_tensors(v, f"{prefix}.{i}", tensors)
                              for i, v in enumerate(state)]}
    if isinstance(state, list):
        return [state_to_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(state)]
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"cannot checkpoint {prefix}: {type(state).__name__}")


def tensors_to_state(encoded: object, tensors: dict[str, torch.Tensor]) -> object:
    """The inverse of `state_to_tensors`."""
    if isinstance(encoded, dict):
        if set(encoded) == {"__tensor__"}:
            return tensors[encoded["__tensor__"]]
        if set(encoded) == {"__int_keys__"}:
            return {int(k): tensors_to_state(v, tensors)
                    for k, v in encoded["__int_keys__"].items()}
        if set(encoded) == {"__tuple__"}:
            return tuple(tensors_to_state(v, tensors) for v in encoded["__tuple__"])
        return {k: tensors_to_state(v, tensors) for k, v in encoded.items()}
    if isinstance(encoded, list):
        return [tensors_to_state(v, tensors) for v in encoded]
    return encoded


def _replace_atomically(tmp: Path, final: Path) -> None:
    """fsync `tmp`, rename it over `final`, and fsync the directory."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(directory: str | os.PathLike, step: int, tensors: dict[str, torch.Tensor],
         meta: dict) -> Path:
    """Write checkpoint STEP (tensors, then the sidecar naming their SHA-256), atomically, then
    drop every other one (left by earlier steps or an earlier run); the sidecar's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"step-{step:09d}"
    weights, sidecar = directory / f"{stem}.safetensors", directory / f"{stem}.json"
    tmp = directory / f".{stem}.safetensors.{os.getpid()}.tmp"
    save_file(tensors, str(tmp))
    digest = sha256_file(tmp)
    _replace_atomically(tmp, weights)
    body = {"format": FORMAT, "step": step, "tensors": weights.name, "sha256": digest, **meta}
    tmp = directory / f".{stem}.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    _replace_atomically(tmp, sidecar)
    for other in steps(directory):
        if other != step:
            remove(directory, other)
    return sidecar


def steps(directory: str | os.PathLike) -> list[int]:
    """Steps that have a sidecar in `directory`, oldest first (complete or not)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def load(directory: str | os.PathLike, step: int) -> Checkpoint:
    """Checkpoint STEP; ValueError when it is incomplete, torn or corrupt."""
    directory = Path(directory)
    sidecar = directory / f"step-{step:09d}.json"
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{sidecar.name}: unreadable sidecar ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("step") != step:
        raise ValueError(f"{sidecar.name}: not a format-{FORMAT} sidecar of step {step}")
    weights = directory / str(meta.get("tensors"))
    if weights.parent != directory or not weights.is_file():
        raise ValueError(f"{sidecar.name}: its tensor file {weights.name} is missing")
    if sha256_file(weights) != meta.get("sha256"):
        raise ValueError(f"{weights.name}: SHA-256 differs from its sidecar's (torn write)")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{weights.name}: unreadable ({exc})") from None
    return Checkpoint(step, tensors, meta)


def latest(directory: str | os.PathLike, warn: bool = True) -> Checkpoint | None:
    """The newest complete checkpoint in `directory` (None when there is none); a torn or
    corrupt one is skipped (said on stderr), never loaded."""
    for step in reversed(steps(directory)):
        try:
            return load(directory, step)
        except ValueError as exc:
            if warn:
                print(f"checkpoint skipped: {exc}", file=sys.stderr)
    return None


def remove(directory: str | os.PathLike, step: int) -> None:
    """Delete checkpoint STEP (sidecar first, so a half-deleted one is never complete)."""
    directory = Path(directory)
    for suffix in (".json", ".safetensors"):
        (directory / f"step-{step:09d}{suffix}").unlink(missing_ok=True)


def clear(directory: str | os.PathLike) -> None:
    """Delete every checkpoint and leftover temporary file in `directory` (a fresh start)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for step in steps(directory):
        remove(directory, step)
    for path in directory.iterdir():
        if path.name.startswith("step-") and path.suffix == ".safetensors" or \
                path.name.startswith(".step-") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Policy:
    """When `loop.fit` checkpoints and whether it starts from the last checkpoint."""

    directory: Path
    every: int | None = None  # steps between checkpoints; None: at the end of each epoch
    resume: bool = False  # continue from the last complete checkpoint (else start afresh)

    def due(self, step: int, epoch_end: bool, last: bool) -> bool:
        """Whether to checkpoint after `step`: mid-epoch on every-th steps, at an epoch's end
        each epoch (or on every-th steps), and always after the last step."""
        if last:
            return True
        if self.every:
            return step % self.every == 0
        return epoch_end
