"""Batched augmentation on tensors: random affine (rotation, scale, shift, shear) and elastic
distortion, one grid_sample call per batch so that it does not dominate epoch time."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine_theta(n: int, generator: torch.Generator, rotation: float = 12.0,
                        scale: tuple[float, float] = (0.85, 1.15), shift: float = 0.12,
                        shear: float = 0.25) -> torch.Tensor:
    """Random 2x3 affine matrices in normalised coordinates; rotation in degrees, shift as a
    fraction of the half-width."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = uniform(-rotation, rotation) * (math.pi / 180)
    sy = uniform(*scale)
    sx = sy * uniform(0.9, 1.1)
    sh = uniform(-shear, shear)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros(n), torch.ones(n)
    rotate = torch.stack([cos, -sin, sin, cos], dim=1).view(n, 2, 2)
    skew = torch.stack([one, sh, zero, one], dim=1).view(n, 2, 2)
    stretch = torch.stack([sx, zero, zero, sy], dim=1).view(n, 2, 2)
    # grid_sample maps output to input coordinates, so theta holds the inverse transform
    a = torch.linalg.inv(rotate @ skew @ stretch)
    t = torch.stack([uniform(-shift, shift), uniform(-shift, shift)], dim=1)
    return torch.cat([a, t.unsqueeze(2)], dim=2)


def elastic_field(n: int, size: int, generator: torch.Generator, alpha: float = 0.08,
                  coarse: int = 5) -> torch.Tensor:
    """Smooth random displacement field (N, H, W, 2) in normalised units: random offsets on a
    coarse grid, upsampled bicubically (a cheap stand-in for Simard et al.'s blurred noise)."""
    field = (torch.rand(n, 2, coarse, coarse, generator=generator) * 2 - 1) * alpha
    field = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def augment_batch(images: torch.Tensor, generator: torch.Generator, elastic: bool = False,
                  strength: float = 1.0) -> torch.Tensor:
    """Apply a random affine (and optionally elastic) warp to a float batch (N, 1, H, W);
    `strength` scales every range (rotation, scale, shift, shear) from the defaults."""
    n, _, h, w = images.shape
    theta = random_affine_theta(n, generator, rotation=12.0 * strength,
                                scale=(1 - 0.15 * strength, 1 + 0.15 * strength),
                                shift=0.12 * strength, shear=0.25 * strength)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if elastic:
        grid = grid + elastic_field(n, h, generator)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
