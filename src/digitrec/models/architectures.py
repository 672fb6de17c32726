"""The CNN designs and a timm-style registry: `create_model(name)` builds any of them by name."""

from __future__ import annotations

from collections.abc import Callable

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
