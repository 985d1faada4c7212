"""`approximate_`: attach approximate multipliers to the quantized layers of a model, in place.

The serialisation format is a plain ``{layer name: multiplier name}`` map (JSON). Layers not named
stay exact. ``approximate_(model, {}, lib)`` or `restore_` removes every emulator again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fames.emulation.functional import (
    WeightPlan,
    approx_conv2d,
    approx_linear,
    int8_available,
    int8_conv_available,
    plan_conv2d_weight,
    plan_linear_weight,
)
from fames.emulation.plan import prepare, table_key
from fames.multipliers.appmul import AppMul
from fames.quant.api import quant_layers
from fames.quant.layers import QConv2d, QuantLayer


class ApproxEmulator:
    """Callable set as ``layer.emulator``: the layer's accumulator with multiplier `mul`.

    In training mode with gradients, the forward value is the approximate one and the gradient is the
    exact layer's (straight-through); otherwise no extra exact conv is computed.

    Args:
        mul: the multiplier (its format must equal the layer's operand format).
        pad_taps: padded conv taps multiply activation code 0 (True, as hardware does) or are skipped.
        offset: per-output-channel constant subtracted from the accumulator (mean-error compensation,
            `fames.sensitivity.compensation`); None for none.
    """

    def __init__(self, mul: AppMul, pad_taps: bool = True, offset: torch.Tensor | None = None) -> None:
        self.mul = mul
        self.pad_taps = pad_taps
        self.offset = offset
        self.prepared = prepare(mul)
        self._plan: tuple[tuple, WeightPlan, torch.Tensor] | None = None
        # what the layer's output depends on besides its input and weights (`fames.selection.replay`)
        offset_key = None if offset is None else hashlib.sha1(
            offset.detach().to("cpu", torch.float64).numpy().tobytes()).hexdigest()
        self.replay_key = ("appmul", table_key(mul.table, mul.fmt), mul.fmt.name, pad_taps, offset_key)

    def _weight_plan(self, layer: QuantLayer, w_int: torch.Tensor) -> WeightPlan:
        """Weight-side plan, reused while the layer's weight and weight step are unchanged (in place
        updates bump ``_version``; the codes are also compared, which is cheap next to the layer)."""
        step = layer.w_quant.step
        key = (layer.weight.data_ptr(), layer.weight._version, step.data_ptr(), step._version,
               tuple(w_int.shape), str(w_int.device))
        if self._plan is not None and self._plan[0] == key and torch.equal(self._plan[2], w_int):
            return self._plan[1]
        if isinstance(layer, QConv2d):
            plan = plan_conv2d_weight(w_int, self.prepared, layer.groups)
        else:
            plan = plan_linear_weight(w_int, self.prepared)
        self._plan = (key, plan, w_int.detach().clone())
        return plan

    def __call__(self, layer: QuantLayer, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
        grad = torch.is_grad_enabled() and (x_int.requires_grad or w_int.requires_grad)
        if self.prepared.is_exact and (grad or not integer_units(x_int.device)):
            return layer.integer_op(x_int, w_int)
        plan = self._weight_plan(layer, w_int)
        if self.prepared.is_exact and not plan.choice.int8:
            return layer.integer_op(x_int, w_int)
        if isinstance(layer, QConv2d):
            acc = approx_conv2d(x_int, w_int, self.prepared, layer.stride, layer.padding, layer.dilation,
                                layer.groups, self.pad_taps, plan)
        else:
            acc = approx_linear(x_int, w_int, self.prepared, plan)
        acc = acc.to(x_int.dtype)
        if self.offset is not None:
            shape = (1, -1, 1, 1) if isinstance(layer, QConv2d) else (-1,)
            offset = self.offset.to(acc.device, acc.dtype).reshape(shape)
            acc = acc - offset if grad else acc.sub_(offset)  # the emulated accumulator is a fresh tensor
        if grad:
            exact = layer.integer_op(x_int, w_int)
            acc = exact + (acc - exact.detach())
        return acc

    def __repr__(self) -> str:
        extra = "" if self.offset is None else ", offset=..."
        return f"ApproxEmulator({self.mul.name!r}, pad_taps={self.pad_taps}{extra})"


def integer_units(device: torch.device) -> bool:
    """Whether `device` runs exact int8 convs or matmuls (`fames.emulation.functional`): there an exact
    multiplier, too, is emulated on them when its codes fit (faster than the layer's float op)."""
    return int8_conv_available(device) or int8_available(device)


def exact_accumulator(layer: QuantLayer, x_int: torch.Tensor, w_int: torch.Tensor) -> torch.Tensor:
    """The exact accumulator of a layer without a multiplier: the exact multiplier's emulator (kept on the
    layer between calls, so its weight plan is reused), which runs on integer units where the device has
    them and the codes fit, else the layer's own op."""
    emulator = layer.__dict__.get("_exact_emulator")
    if emulator is None or emulator.mul.fmt != layer.operand_format:
        emulator = ApproxEmulator(AppMul.exact(layer.operand_format))
        layer.__dict__["_exact_emulator"] = emulator
    return emulator(layer, x_int, w_int)


def _lookup(library: Any, name: str, layer: str) -> AppMul:
    try:
        mul = library.get(name)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"layer {layer!r}: unknown multiplier {name!r} ({exc})") from None
    if mul is None:
        raise ValueError(f"layer {layer!r}: unknown multiplier {name!r}")
    return mul


def approximate_(model: nn.Module, assignment: Mapping[str, str], library: Any,
                 pad_taps: bool = True, offsets: Mapping[str, Any] | None = None) -> nn.Module:
    """Emulate the multipliers of `assignment` in the quantized layers of `model`, in place.

    Every emulator already present is removed first, so the call sets exactly `assignment`; layers not
    named stay exact. Validation happens before anything changes.

    Args:
        model: a model quantized with `fames.quant.quantize_` (activation signedness decided).
        assignment: ``{layer name: multiplier name}``.
        library: a `fames.multipliers.library.Library` (anything with ``get(name) -> AppMul``).
        pad_taps: padded conv taps multiply activation code 0 (True) or are skipped (False).
        offsets: ``{layer: per-output-channel accumulator offsets}`` of mean-error compensation (see
            `fames.select`, ``Selection.offsets``), for layers of `assignment`.

    Returns:
        `model`.

    Raises:
        ValueError: unknown layer, unknown multiplier, a multiplier whose operand format differs from
            the layer's, or offsets for a layer not in `assignment` or of the wrong length.

    Example:
        >>> approximate_(model, {"features.0": "u4xs4_trunc_k3"}, builtin_library())  # doctest: +SKIP
    """
    if not isinstance(assignment, Mapping):
        raise TypeError(f"assignment must be a {{layer: multiplier}} map, not {type(assignment).__name__}")
    layers = dict(quant_layers(model))
    emulators: dict[str, ApproxEmulator] = {}
    for layer_name, mul_name in assignment.items():
        if layer_name not in layers:
            known = ", ".join(list(layers)[:12]) + (" ..." if len(layers) > 12 else "")
            raise ValueError(f"unknown layer {layer_name!r}: quantized layers are [{known}]")
        mul = _lookup(library, mul_name, layer_name)
        try:
            fmt = layers[layer_name].operand_format
        except RuntimeError as exc:
            raise ValueError(f"layer {layer_name!r}: {exc}") from None
        if mul.fmt != fmt:
            raise ValueError(
                f"layer {layer_name!r} needs operand format {fmt.name} but multiplier {mul_name!r} is "
                f"{mul.fmt.name}"
            )
        emulators[layer_name] = ApproxEmulator(mul, pad_taps, _offset(layers[layer_name], layer_name, offsets))
    for layer_name in offsets or {}:
        if layer_name not in assignment:
            raise ValueError(f"offsets given for layer {layer_name!r}, which the assignment does not name")
    restore_(model)
    for layer_name, emulator in emulators.items():
        layers[layer_name].emulator = emulator
        layers[layer_name].multiplier_name = emulator.mul.name
    return model


def _offset(layer: QuantLayer, name: str, offsets: Mapping[str, Any] | None) -> torch.Tensor | None:
    if not offsets or name not in offsets:
        return None
    value = torch.as_tensor(offsets[name], dtype=torch.float64).reshape(-1)
    n_out = layer.weight.shape[0]
    if value.numel() != n_out or not torch.isfinite(value).all():
        raise ValueError(f"layer {name!r}: offsets need {n_out} finite values, got {value.numel()}")
    return value if torch.any(value != 0) else None


def restore_(model: nn.Module) -> nn.Module:
    """Remove every emulator: all quantized layers use exact multipliers again. Returns `model`."""
    for _, layer in quant_layers(model):
        layer.emulator = None
        layer.multiplier_name = None
    return model


def assignment_of(model: nn.Module) -> dict[str, str]:
    """The ``{layer: multiplier name}`` map currently attached to `model`."""
    return {name: layer.multiplier_name for name, layer in quant_layers(model)
            if layer.emulator is not None and layer.multiplier_name is not None}


def save_assignment(assignment: Mapping[str, str], path: str | os.PathLike) -> Path:
    """Write `assignment` as a JSON object ``{layer: multiplier}``. Returns the path."""
    path = Path(path)
    path.write_text(json.dumps(dict(assignment), indent=2, sort_keys=True) + "\n")
    return path


def load_assignment(path: str | os.PathLike) -> dict[str, str]:
    """Read an assignment written by `save_assignment`.

    Raises:
        ValueError: the file is not a JSON object of strings to strings.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: an assignment must be a JSON object {{layer name: multiplier name}}")
    return data


def offsets_path(assignment_path: str | os.PathLike) -> Path:
    """Where the compensation offsets of an assignment file live: ``x.json`` -> ``x.offsets.json``."""
    return Path(assignment_path).with_suffix(".offsets.json")


def save_offsets(offsets: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write compensation offsets ``{layer: [accumulator offset per output channel]}`` as JSON."""
    path = Path(path)
    data = {k: [int(v) if float(v).is_integer() else float(v) for v in vals] for k, vals in offsets.items()}
    path.write_text(json.dumps(data, sort_keys=True) + "\n")
    return path


def load_offsets(path: str | os.PathLike) -> dict[str, list[float]]:
    """Read offsets written by `save_offsets`.

    Raises:
        ValueError: the file is not a JSON object of layer names to lists of numbers.
    """
    data = json.loads(Path(path).read_text())
    ok = isinstance(data, dict) and all(
        isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        for v in data.values())
    if not ok:
        raise ValueError(f"{path}: offsets must be a JSON object {{layer name: [number per output channel]}}")
    return {k: [float(x) for x in v] for k, v in data.items()}

