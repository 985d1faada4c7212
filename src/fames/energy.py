"""Model energy from MAC counts and per-multiplication energies (DESIGN.md section 5).

Multiplier energy of an assignment is ``sum_l MAC_l * e(m_l)``; the reference is the same model with
the exact multiplier of every layer's operand format (same bit widths). A second figure adds one
accumulator adder per MAC, so the saving is not overstated.

Adder model (an assumption, stated here): a ``b``-bit ripple-carry accumulator adder costs
``b * e_bit`` per addition, where ``e_bit`` is the energy of one full-adder cell. ``e_bit`` is derived
from the library itself: an exact ``b_a x b_w`` array multiplier is about ``b_a * b_w`` cells of one
AND gate plus one full adder, so ``e_bit ~ e_exact / (b_a * b_w)``; we take the median over the
library's characterised exact multipliers (same cells, clock and activity as the multipliers, hence
comparable). Without any characterised exact multiplier we fall back to `FALLBACK_ADDER_PJ_PER_BIT`.
The accumulator width of a layer is ``b_a + b_w + ceil(log2(fan_in))`` (no overflow).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat
from fames.quant.api import quant_layers
from fames.quant.layers import QConv2d, QuantLayer

log = logging.getLogger(__name__)

# Assumed energy of one full-adder bit (pJ) when the library has no characterised exact multiplier:
# order of magnitude of an OSU 0.18 um full adder switching at random inputs (~0.05 pJ per operation).
FALLBACK_ADDER_PJ_PER_BIT = 0.05


@dataclass(frozen=True)
class LayerSpec:
    """Operand format, fan-in (products per output) and accumulator width of a quantized layer."""

    fmt: OperandFormat
    fan_in: int
    acc_bits: int


def layer_specs(model: nn.Module) -> dict[str, LayerSpec]:
    """`LayerSpec` of every quantized layer of `model` (quantizers must be initialised).

    Args:
        model: a model with quantized layers.

    Returns:
        ``{layer name: LayerSpec}`` in model order.
    """
    out = {}
    for name, layer in quant_layers(model):
        if isinstance(layer, QConv2d):
            kh, kw = layer.kernel_size
            fan_in = layer.in_channels // layer.groups * kh * kw
        else:
            fan_in = layer.in_features
        fmt = layer.operand_format
        out[name] = LayerSpec(fmt, fan_in, fmt.a_bits + fmt.w_bits + math.ceil(math.log2(max(fan_in, 1))))
    return out


def count_macs(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Multiplications per input sample of every quantized layer, measured with forward hooks.

    Args:
        model: a model with quantized layers.
        example_input: a batch of inputs (batch size >= 1) of the shape the model will see.

    Returns:
        ``{layer name: MACs per sample}``; a layer called several times is counted every time.

    Raises:
        ValueError: empty batch or no quantized layers.
    """
    if example_input.shape[0] < 1:
        raise ValueError("example_input must hold at least one sample")
    layers = dict(quant_layers(model))
    if not layers:
        raise ValueError("model has no quantized layers: run fames.quant.quantize_ first")
    macs = dict.fromkeys(layers, 0)

    def hook_for(name: str):
        def hook(module: QuantLayer, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            if isinstance(module, QConv2d):
                macs[name] += module.macs_per_sample(tuple(x.shape[-2:]))
            else:  # Linear: one product per (position, in, out)
                positions = int(np.prod(x.shape[1:-1])) if x.dim() > 2 else 1
                macs[name] += positions * module.macs_per_sample()

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return macs


def adder_pj_per_bit(library: Iterable[AppMul]) -> float:
    """Energy of one full-adder bit derived from the library's exact multipliers (see module docstring).

    Args:
        library: any iterable of AppMul.

    Returns:
        ``median(e_exact / (b_a * b_w))`` over characterised exact multipliers, else the fallback.
    """
    vals = [m.hardware.energy_pj / (m.fmt.a_bits * m.fmt.w_bits)
            for m in library if m.hardware is not None and m.is_exact]
    if not vals:
        log.warning("no characterised exact multiplier: adder energy uses %.3g pJ/bit",
                    FALLBACK_ADDER_PJ_PER_BIT)
        return FALLBACK_ADDER_PJ_PER_BIT
    return float(np.median(vals))


@dataclass
class EnergyReport:
    """Energies of one assignment and of the exact reference (same bit widths), per sample, in pJ.

    Attributes:
        multiplier_pj: ``sum_l MAC_l e(m_l)``.
        reference_pj: the same with every layer's exact multiplier.
        reduction_pct: ``100 * (1 - multiplier_pj / reference_pj)``.
        mac_pj / mac_reference_pj / mac_reduction_pct: with one accumulator adder per MAC added.
        per_layer: ``{layer: {"macs", "multiplier", "energy_pj", "reference_pj"}}``.
        adder_pj_per_bit: adder energy per bit used.
    """

    multiplier_pj: float
    reference_pj: float
    reduction_pct: float
    mac_pj: float
    mac_reference_pj: float
    mac_reduction_pct: float
    adder_pj_per_bit: float
    per_layer: dict[str, dict] = field(default_factory=dict)


def model_energy(
    macs: Mapping[str, int],
    assignment: Mapping[str, str],
    library,
    specs: Mapping[str, LayerSpec] | None = None,
    adder_pj: float | None = None,
) -> EnergyReport:
    """Energy of a multiplier assignment.

    Args:
        macs: ``{layer: MACs per sample}`` (`count_macs`).
        assignment: ``{layer: multiplier name}``; layers of `macs` not listed use their exact multiplier.
        library: a `Library` (needs ``get(name)`` and ``exact(fmt)``).
        specs: `layer_specs(model)`; needed for layers absent from `assignment` and for accumulator widths
            (without it the accumulator is taken as ``b_a + b_w + 10`` bits).
        adder_pj: energy per adder bit; default `adder_pj_per_bit(library)`.

    Returns:
        An `EnergyReport`.

    Raises:
        ValueError: unknown multiplier, format mismatch, unknown layer, or missing format information.
    """
    unknown = set(assignment) - set(macs)
    if unknown:
        raise ValueError(f"assignment names layers without MAC counts: {sorted(unknown)}")
    e_bit = adder_pj_per_bit(library) if adder_pj is None else float(adder_pj)
    tot = ref = mac_tot = mac_ref = 0.0
    per_layer = {}
    for layer, n in macs.items():
        spec = specs.get(layer) if specs is not None else None
        if layer in assignment:
            mul = library.get(assignment[layer])
            if spec is not None and mul.fmt != spec.fmt:
                raise ValueError(f"layer {layer!r} needs format {spec.fmt.name}, multiplier {mul.name!r} is "
                                 f"{mul.fmt.name}")
            fmt = mul.fmt
        elif spec is not None:
            fmt = spec.fmt
            mul = library.exact(fmt)
        else:
            raise ValueError(f"layer {layer!r} has no multiplier in the assignment and no LayerSpec")
        exact = library.exact(fmt)
        acc_bits = spec.acc_bits if spec is not None else fmt.a_bits + fmt.w_bits + 10
        e_add = acc_bits * e_bit
        tot += n * mul.energy_pj
        ref += n * exact.energy_pj
        mac_tot += n * (mul.energy_pj + e_add)
        mac_ref += n * (exact.energy_pj + e_add)
        per_layer[layer] = {"macs": int(n), "multiplier": mul.name, "energy_pj": n * mul.energy_pj,
                            "reference_pj": n * exact.energy_pj, "acc_bits": acc_bits}
    return EnergyReport(tot, ref, _reduction(tot, ref), mac_tot, mac_ref, _reduction(mac_tot, mac_ref), e_bit,
                        per_layer)


def _reduction(value: float, reference: float) -> float:
    return 100.0 * (1.0 - value / reference) if reference > 0 else 0.0
