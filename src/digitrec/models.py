"""The CNN designs, a timm-style registry (`create_model(name)`), the averaging Ensemble, and
safetensors + JSON model-card persistence (loading never unpickles)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

_REGISTRY: dict[str, Callable[[], nn.Module]] = {}


def register(name: str):
    """Decorator: make a model constructor available to `create_model(name)`."""
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory
    return wrap


def list_models() -> list[str]:
    """Names of all registered architectures."""
    return sorted(_REGISTRY)


def create_model(name: str) -> nn.Module:
    """Build a freshly initialised model by registry name."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _REGISTRY[name]()
    model.arch = name
    return model


def _conv_bn(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register("cnn1")
def cnn1() -> nn.Module:
    """Seed 000: conv3x3 32 → pool → conv3x3 64 → pool → fc128 → fc10, dropout before the head."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


@register("cnnbn")
def cnnbn() -> nn.Module:
    """Seed 002: conv16-BN-pool-drop → conv32-BN-pool-drop → fc64-BN-drop → fc10."""
    return nn.Sequential(
        *_conv_bn(1, 16), nn.MaxPool2d(2), nn.Dropout(0.25),
        *_conv_bn(16, 32), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(inplace=True),
        nn.Dropout(0.25),
        nn.Linear(64, 10),
    )


@register("cnn5")
def cnn5() -> nn.Module:
    """Seed 004: conv5x5 32 'same' → pool → conv5x5 64 'same' → pool → fc1024 → fc10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024), nn.ReLU(inplace=True), nn.Dropout(0.4),
        nn.Linear(1024, 10),
    )


@register("vgg8")
def vgg8() -> nn.Module:
    """A stronger, still CPU-friendly member: two BN 3x3 conv pairs (32, 64) and a BN head."""
    return nn.Sequential(
        *_conv_bn(1, 32), *_conv_bn(32, 32), nn.MaxPool2d(2),
        *_conv_bn(32, 64), *_conv_bn(64, 64), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(128, 10),
    )


@register("fastnet")
def fastnet() -> nn.Module:
    """Lean net for `train --fast` (~1.3M multiply-adds per image): 2x2 space-to-depth to 14x14x4,
    then BN 3x3 convs 16 → 24-pool → 48-pool and a linear head: 99.2% in 1.5 epochs."""
    return nn.Sequential(
        nn.PixelUnshuffle(2), *_conv_bn(4, 16),
        *_conv_bn(16, 24), nn.MaxPool2d(2),
        *_conv_bn(24, 48), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(48 * 3 * 3, 10),
    )


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


def save_model(model: nn.Module, directory: str | os.PathLike, name: str, card: dict,
               half: bool = False) -> Path:
    """Write NAME.safetensors (optionally fp16) and NAME.json (the model card)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(directory / f"{name}.safetensors"))
    card = {"name": name, "architecture": model.arch, "parameters": parameter_count(model),
            "dtype": "float16" if half else "float32", **card}
    (directory / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return directory / f"{name}.safetensors"


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Load a model from NAME.safetensors + NAME.json; returns (model in eval mode, card)."""
    path = Path(path)
    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    model = create_model(card["architecture"])
    state = load_file(str(path.with_suffix(".safetensors")))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state)
    return model.eval(), card


BUNDLED_DIR = Path(__file__).parent / "weights"


def load_ensemble(directory: str | os.PathLike | None = None,
                  names: Sequence[str] | None = None) -> tuple[Ensemble, dict[str, dict]]:
    """Load every model in a directory (the bundled weights by default) into an Ensemble."""
    directory = Path(directory) if directory else BUNDLED_DIR
    paths = sorted(directory.glob("*.safetensors"))
    if names:
        paths = [p for p in paths if p.stem in names]
    if not paths:
        raise FileNotFoundError(f"no *.safetensors models in {directory}")
    loaded = {p.stem: load_model(p) for p in paths}
    ensemble = Ensemble({n: m for n, (m, _) in loaded.items()}).eval()
    return ensemble, {n: card for n, (_, card) in loaded.items()}
