"""Built-in CNNs for small grey images, one file each, and a registry by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from fames.models.lenet import LeNet
from fames.models.resnet import ResNet
from fames.models.vgg import VGG

MODELS: dict[str, Callable[..., nn.Module]] = {"lenet": LeNet, "vgg": VGG, "resnet": ResNet}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a built-in model by name ('lenet', 'vgg', 'resnet')."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: built-in models are {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "LeNet", "ResNet", "VGG", "build_model"]
