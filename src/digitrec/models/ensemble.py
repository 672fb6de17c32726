"""The averaging Ensemble, and the digest of its weights that derived files (an exported
graph, int8 ranges, a model version) are tied to."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


class Ensemble(nn.Module):
    """Averages the members' softmax probabilities (the seed's "average of their predictions")."""

    returns_probabilities = True

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleDict(members)

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member probabilities, shape (M, N, 10)."""
        return torch.stack([torch.softmax(m(x), dim=1) for m in self.members.values()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble probabilities, shape (N, 10); each row sums to 1."""
        return self.member_probabilities(x).mean(dim=0)


def weights_digest(ensemble: Ensemble) -> str:
    """SHA-256 of each member's name, architecture and weights (what derived files, such as an
    exported graph or an int8 calibration, depend on)."""
    digest = hashlib.sha256()
    for name, member in ensemble.members.items():
        digest.update(f"\0member {name}\0{member!r}\0".encode())
        for key, tensor in member.state_dict().items():
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}\0".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())
