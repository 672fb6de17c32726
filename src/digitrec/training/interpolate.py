"""Weight interpolation between an ensemble and a fine-tuned copy of it (WiSE-FT: Wortsman et al.,
"Robust fine-tuning of zero-shot models", CVPR 2022): every member's weights become
(1 - alpha) x base + alpha x tuned, BatchNorm statistics included. A short fine-tune (on
corrections, on continental styles) gains on what it learned and loses a little on MNIST; part
of the way back keeps most of the gain and gives back the loss. `choose_alpha` picks alpha on
held-out images (MNIST validation), never on the test set that accepts the model."""

from __future__ import annotations

import copy

import numpy as np
import torch

from digitrec.models import Ensemble

GRID = (1.0, 0.75, 0.5, 0.25)  # tried in this order: the most of the fine-tune first


def mix_states(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
               alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) x base + alpha x tuned for floating tensors; integer ones (BatchNorm's step
    counter) from the tuned model."""
    if base.keys() != tuned.keys():
        raise ValueError("the two models have different parameters")
    return {k: torch.lerp(base[k].float(), tuned[k].float(), alpha).to(base[k].dtype)
            if base[k].is_floating_point() else tuned[k] for k in base}


def interpolate(base: Ensemble, tuned: Ensemble, alpha: float) -> Ensemble:
    """A new Ensemble: each of `tuned`'s members moved back to `base`'s by 1 - alpha."""
    if base.members.keys() != tuned.members.keys():
        raise ValueError(f"members differ: {sorted(base.members)} vs {sorted(tuned.members)}")
    mixed = copy.deepcopy(tuned)
    for name, member in mixed.members.items():
        member.load_state_dict(mix_states(base.members[name].state_dict(),
                                          tuned.members[name].state_dict(), alpha))
    return mixed.eval()


@torch.inference_mode()
def ensemble_accuracy(ensemble: Ensemble, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of an fp32 Ensemble on uint8 28x28 images."""
    from digitrec.training.loop import predict_proba
    return float((predict_proba(ensemble, images).argmax(1) == labels).mean())


def choose_alpha(base: Ensemble, tuned: Ensemble, images: np.ndarray, labels: np.ndarray,
                 max_drop_pt: float, grid: tuple[float, ...] = GRID) -> tuple[float, list[dict]]:
    """The first alpha of `grid` whose interpolated ensemble loses at most `max_drop_pt` points
    of accuracy against `base` on the held-out `images` (else the grid's last); the table of
    what each alpha tried scored (alpha 0 is the base)."""
    base_accuracy = ensemble_accuracy(base, images, labels)
    table = [{"alpha": 0.0, "accuracy": base_accuracy}]
    for alpha in grid:
        accuracy = ensemble_accuracy(interpolate(base, tuned, alpha), images, labels)
        table.append({"alpha": alpha, "accuracy": accuracy})
        if (base_accuracy - accuracy) * 100 <= max_drop_pt + 1e-9:
            return alpha, table
    return grid[-1], table
