"""`quantize_`: replace Conv2d/Linear modules of any model by their quantized twins, in place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from fames.quant.config import LayerBits, resolve_config
from fames.quant.layers import QConv2d, QLinear, QuantLayer


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the Conv2d/Linear modules (already-quantized ones included), in definition order."""
    return [name for name, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]


def quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    """Iterate over ``(name, layer)`` for the quantized layers of `model`."""
    for name, mod in model.named_modules():
        if isinstance(mod, QuantLayer):
            yield name, mod


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def quantize_(
    model: nn.Module,
    config: Mapping[str, Any],
    per_channel: bool = True,
    calibration: torch.Tensor | None = None,
) -> nn.Module:
    """Quantize the layers named in `config` in place and return `model`.

    Args:
        model: any module built from Conv2d/Linear (grouped and depthwise conv included).
        config: ``{layer name or glob pattern: bits}``; bits is an int (weights and activations) or
            ``{"w": 2, "a": 4}``. Layers not covered stay in float.
        per_channel: per-output-channel weight steps (True) or one step per tensor.
        calibration: optional input batch; one forward pass initialises the quantizer steps (and the
            activation signedness) from data instead of waiting for the first forward.

    Raises:
        ValueError: unknown layer name, pattern matching nothing, or bits outside 2..8.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
        >>> _ = quantize_(net, {"0": 8, "3": {"w": 2, "a": 4}})
        >>> [type(m).__name__ for m in net][::3]
        ['QConv2d', 'QLinear']
    """
    bits = resolve_config(config, quantizable_layers(model))
    for name, layer_bits in bits.items():
        module = model.get_submodule(name)
        _set_module(model, name, _quantized(module, layer_bits, per_channel))
    if calibration is not None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(calibration)
        model.train(was_training)
    return model


def _quantized(module: nn.Module, bits: LayerBits, per_channel: bool) -> QuantLayer:
    if isinstance(module, QuantLayer):
        raise ValueError(f"layer {module!r} is already quantized")
    cls = QConv2d if isinstance(module, nn.Conv2d) else QLinear
    return cls.from_float(module, bits.w, bits.a, bits.a_signed, per_channel)


def bits_of(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{layer: {"w": .., "a": .., "a_signed": ..}}`` of every quantized layer (JSON-ready)."""
    out = {}
    for name, layer in quant_layers(model):
        flag = int(layer.a_quant.signed_flag)
        out[name] = {"w": layer.w_bits, "a": layer.a_bits, "a_signed": None if flag < 0 else bool(flag)}
    return out
