"""What every inference backend is, and how one is chosen by name."""

from __future__ import annotations

from typing import Protocol

import torch

from digitrec.config import BACKEND_NAMES
from digitrec.errors import ConfigError

BACKENDS = BACKEND_NAMES


class Backend(Protocol):
    """Runs an ensemble: normalised images (N, 1, 28, 28) → per-member probabilities."""

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member softmax probabilities, shape (M, N, 10)."""
        ...


def check_backend(name: str | None) -> str | None:
    """`name` lower-cased, or None for the default; ConfigError for an unknown one."""
    chosen = (name or "").strip().lower() or None
    if chosen not in (None, *BACKENDS):
        raise ConfigError(f"unknown inference backend {name!r}: use {', '.join(BACKENDS)}")
    return chosen
