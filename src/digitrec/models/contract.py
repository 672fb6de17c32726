"""The input contract every model is trained and served on, in one place: a SIZE x SIZE uint8
image, light ink on black, the digit's long side BOX px and its centre of mass in the middle
(what digitrec.preprocess makes), as one channel (N, 1, SIZE, SIZE) float, normalised by
MNIST's MEAN and STD."""

from __future__ import annotations

import numpy as np
import torch

from digitrec.preprocess.normalise import BOX, SIZE

MEAN, STD = 0.1307, 0.3081
INPUT_SHAPE = (1, 1, SIZE, SIZE)  # one image, as the exported graph takes it

__all__ = ["BOX", "INPUT_SHAPE", "MEAN", "SIZE", "STD", "to_tensor"]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) → normalised float (N, 1, 28, 28), the input every model expects."""
    x = torch.from_numpy(np.asarray(images).astype(np.float32)).unsqueeze(1)
    return (x / 255.0 - MEAN) / STD
