"""The "torch" backend: the ensemble's members rewritten for fast CPU inference in PyTorch.

Per member (an eval-mode nn.Sequential): BatchNorm folded into the conv/linear before it, dropout
removed, ReLU moved after max-pooling (exact: max commutes with ReLU, and it touches 4x fewer
values), channels-last (NHWC) activations so that oneDNN runs the convolutions, and the first
Linear's columns permuted to read NHWC features directly (no copy back to NCHW at Flatten).
Outputs equal the reference to float rounding; tests/inference/test_backends.py checks identical
predictions.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from digitrec.models import INPUT_SHAPE


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode copy of a Sequential with each BatchNorm folded into the layer before it and
    dropout removed, so that inference runs fewer ops (other modules: an eval-mode copy)."""
    model = copy.deepcopy(model).eval()
    if not isinstance(model, nn.Sequential):
        return model
    layers: list[nn.Module] = []
    for layer in model:
        previous = layers[-1] if layers else None
        if isinstance(layer, nn.Dropout):
            continue
        if isinstance(layer, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            layers[-1] = fuse_conv_bn_eval(previous, layer)
        elif isinstance(layer, nn.BatchNorm1d) and isinstance(previous, nn.Linear):
            layers[-1] = fuse_linear_bn_eval(previous, layer)
        else:
            layers.append(layer)
    return nn.Sequential(*layers).eval()


def pool_before_relu(model: nn.Sequential) -> nn.Sequential:
    """Swap each ReLU → MaxPool2d pair: max-pooling commutes with ReLU, so the result is
    bit-identical and the ReLU runs on a quarter of the values."""
    layers = list(model)
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.ReLU) and isinstance(layers[i + 1], nn.MaxPool2d):
            layers[i], layers[i + 1] = layers[i + 1], nn.ReLU(inplace=True)
    return nn.Sequential(*layers).eval()


class FlattenNHWC(nn.Module):
    """Flatten a channels-last (N, C, H, W) tensor in its memory order (H, W, C): a free view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, H*W*C)."""
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def nhwc_head(model: nn.Sequential) -> nn.Sequential:
    """Replace Flatten → Linear by FlattenNHWC → Linear with its input columns permuted from
    (C, H, W) to (H, W, C) order, so a channels-last feature map needs no copy to flatten."""
    layers = list(model)
    x = torch.zeros(INPUT_SHAPE)
    with torch.no_grad():
        for i, layer in enumerate(layers[:-1]):
            following = layers[i + 1]
            if (isinstance(layer, nn.Flatten) and x.dim() == 4 and isinstance(following, nn.Linear)
                    and following.in_features == x[0].numel()):
                c, h, w = x.shape[1:]
                linear = copy.deepcopy(following)
                weight = linear.weight.view(-1, c, h, w).permute(0, 2, 3, 1).reshape(-1, c * h * w)
                linear.weight = nn.Parameter(weight.contiguous(), requires_grad=False)
                layers[i], layers[i + 1] = FlattenNHWC(), linear
                break
            x = layer(x)
    return nn.Sequential(*layers).eval()


def optimize_member(member: nn.Module) -> nn.Module:
    """One member, folded and laid out for channels-last inference (gradients off)."""
    folded = fold_batchnorm(member)
    if isinstance(folded, nn.Sequential):
        folded = nhwc_head(pool_before_relu(folded))
    folded = folded.to(memory_format=torch.channels_last)
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


class FastEnsemble(nn.Module):
    """The Ensemble's computation over optimised members (same outputs, faster)."""

    returns_probabilities = True

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__()
        self.members = nn.ModuleDict(members)

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Per-member probabilities, shape (M, N, 10)."""
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.stack([torch.softmax(m(x), dim=1) for m in self.members.values()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble probabilities, shape (N, 10); each row sums to 1."""
        return self.member_probabilities(x).mean(dim=0)

    def subset(self, names: list[str]) -> FastEnsemble:
        """The same optimised members, only those named (for per-member measurements)."""
        return FastEnsemble({n: self.members[n] for n in names}).eval()
