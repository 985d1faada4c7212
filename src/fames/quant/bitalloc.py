"""Mixed-precision bit allocation: HAWQ-style sensitivity and an ILP over per-layer bit widths.

Sensitivity of layer l at b bits: ``Omega_l(b) = Tr(H_l) / n_l * ||Q_b(W_l) - W_l||^2`` (HAWQ-v2), with
the Hessian trace of the loss w.r.t. the layer's weights estimated by Hutchinson's method
(``E[v^T H v]``, Rademacher v, Hessian-vector products by double backward). The ILP picks one bit
width per layer minimising ``sum_l Omega_l(b_l)`` under a budget on average weight bits, model size or
bit-operations, solved by HiGHS through `scipy.optimize.milp`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import nn

from fames.multipliers.formats import code_range
from fames.quant.lsq import check_bits, mse_step

BUDGET_KINDS = ("avg_bits", "size_kb", "bops")


@dataclass(frozen=True)
class LayerInfo:
    """What bit allocation needs to know about one layer."""

    name: str
    params: int  # weight count n_l
    macs: int  # multiplications per sample
    trace: float  # Hutchinson estimate of Tr(H_l)
    perturbation: dict[int, float]  # bits -> ||Q_b(W) - W||^2

    def sensitivity(self, bits: int) -> float:
        return self.trace / self.params * self.perturbation[bits]


@dataclass
class Allocation:
    """Result of `allocate_bits`: bits per layer and the figures behind them."""

    bits: dict[str, int]
    objective: float
    avg_bits: float
    size_kb: float
    bops: float
    layers: list[LayerInfo] = field(default_factory=list)

    def config(self, min_act_bits: int = 2, act_bits: int | None = None) -> dict[str, dict[str, int]]:
        """A `quantize_` config: weight bits as allocated; activation bits = `act_bits` or max(w, min)."""
        return {name: {"w": b, "a": act_bits if act_bits else max(b, min_act_bits)} for name, b in self.bits.items()}


def _target_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def count_macs(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Multiplications per sample of every Conv2d/Linear layer, measured with forward hooks."""
    macs: dict[str, int] = {}
    hooks = []
    for name, mod in _target_layers(model).items():
        def hook(mod, inputs, output, name=name):
            per_out = mod.weight[0].numel()
            macs[name] = int(output[0].numel() * per_out)
        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()
            model(example[:1])
    finally:
        for h in hooks:
            h.remove()
    return macs


def hessian_traces(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int = 32, seed: int = 0,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict[str, float]:
    """Hutchinson estimates of Tr(d^2 L / dW_l^2) for every Conv2d/Linear weight on batch (x, y)."""
    layers = _target_layers(model)
    params = [m.weight for m in layers.values()]
    model.eval()
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    sums = [0.0] * len(params)
    for i in range(samples):
        vs = [torch.randint(0, 2, p.shape, generator=gen).to(p) * 2 - 1 for p in params]
        hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=i < samples - 1)
        for j, (hv, v) in enumerate(zip(hvs, vs)):
            sums[j] += float((hv * v).sum())
        if progress:
            progress(i + 1, samples, {})
    return {name: s / samples for name, s in zip(layers, sums)}


def weight_perturbation(weight: torch.Tensor, bits: int, per_channel: bool = True) -> float:
    """``||Q_b(W) - W||^2`` with an MSE-optimal (per-channel) step, signed codes."""
    qmin, qmax = code_range(bits, True)
    w = weight.detach()
    step = mse_step(w, qmin, qmax, dim=0 if per_channel else None)
    view = step.reshape(-1, *([1] * (w.dim() - 1))) if per_channel else step
    q = torch.clamp(torch.round(w / view), qmin, qmax) * view
    return float((q - w).pow(2).sum())


def layer_infos(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, candidates: Sequence[int], samples: int = 32,
    seed: int = 0, progress: Callable[[int, int, dict], None] | None = None,
) -> list[LayerInfo]:
    """Trace, size, MACs and per-candidate perturbation of every Conv2d/Linear layer of a float model."""
    traces = hessian_traces(model, x, y, samples, seed, progress)
    macs = count_macs(model, x)
    return [
        LayerInfo(name, mod.weight.numel(), macs[name], max(traces[name], 0.0),
                  {b: weight_perturbation(mod.weight, b) for b in candidates})
        for name, mod in _target_layers(model).items()
    ]


def _budget_row(
    layers: Sequence[LayerInfo], kind: str, bits: int, layer: LayerInfo, act: Callable[[int], int]
) -> float:
    if kind == "avg_bits":
        return layer.params * bits / sum(li.params for li in layers)
    if kind == "size_kb":
        return layer.params * bits / 8 / 1024
    return float(layer.macs * bits * act(bits))


def solve_allocation(
    layers: Sequence[LayerInfo], candidates: Sequence[int], budgets: Mapping[str, float],
    fixed: Mapping[str, int] | None = None, act_bits: Callable[[int], int] = lambda b: b,
) -> Allocation:
    """Choose bits per layer minimising total sensitivity under every budget (ILP, HiGHS).

    Args:
        layers: per-layer infos (from `layer_infos`).
        candidates: allowed bit widths, e.g. (2, 3, 4, 8).
        budgets: ``{kind: bound}``, all enforced together; kinds are 'avg_bits' (parameter-weighted
            mean weight bits), 'size_kb' (weights), 'bops' (bit-operations per sample, MACs x weight
            bits x activation bits).
        fixed: layers whose bits are imposed, e.g. {'conv1': 8}.
        act_bits: activation bits as a function of weight bits (for 'bops').

    Raises:
        ValueError: bad kind/candidates/fixed layer, or no allocation fits the budgets.
    """
    if not budgets:
        raise ValueError("give at least one budget (avg_bits, size_kb or bops)")
    for kind in budgets:
        if kind not in BUDGET_KINDS:
            raise ValueError(f"unknown budget kind {kind!r}: expected one of {', '.join(BUDGET_KINDS)}")
    cands = sorted({check_bits(int(b), "candidate bits") for b in candidates})
    fixed = dict(fixed or {})
    names = [li.name for li in layers]
    for name, b in fixed.items():
        if name not in names:
            raise ValueError(f"fixed bits for unknown layer {name!r}: layers are {', '.join(names)}")
        check_bits(b, f"fixed bits of {name}")
    options = [[fixed[li.name]] if li.name in fixed else cands for li in layers]
    for li, opts in zip(layers, options):
        missing = [b for b in opts if b not in li.perturbation]
        if missing:
            raise ValueError(f"layer {li.name}: no perturbation measured for bits {missing}")
    index = [(i, b) for i, opts in enumerate(options) for b in opts]
    cost = np.array([layers[i].sensitivity(b) for i, b in index])
    one_hot = np.zeros((len(layers), len(index)))
    for j, (i, _) in enumerate(index):
        one_hot[i, j] = 1
    constraints = [LinearConstraint(one_hot, 1, 1)]
    for kind, bound in budgets.items():
        row = np.array([_budget_row(layers, kind, b, layers[i], act_bits) for i, b in index])
        constraints.append(LinearConstraint(row[None, :], -np.inf, bound))
    res = milp(cost, integrality=np.ones(len(index)), bounds=Bounds(0, 1), constraints=constraints)
    if res.status != 0 or res.x is None:
        lows = {k: sum(min(_budget_row(layers, k, b, li, act_bits) for b in o) for li, o in zip(layers, options))
                for k in budgets}
        wanted = ", ".join(f"{k} <= {v:g} (smallest possible {lows[k]:.4g})" for k, v in budgets.items())
        raise ValueError(f"no bit allocation fits {wanted}")
    chosen = {layers[i].name: b for (i, b), v in zip(index, res.x) if v > 0.5}
    return _allocation(layers, chosen, float(cost @ np.round(res.x)), act_bits)


def _allocation(layers: Sequence[LayerInfo], bits: dict[str, int], objective: float,
                act_bits: Callable[[int], int]) -> Allocation:
    total = sum(li.params for li in layers)
    return Allocation(
        bits=bits, objective=objective,
        avg_bits=sum(li.params * bits[li.name] for li in layers) / total,
        size_kb=sum(li.params * bits[li.name] for li in layers) / 8 / 1024,
        bops=float(sum(li.macs * bits[li.name] * act_bits(bits[li.name]) for li in layers)),
        layers=list(layers),
    )


def brute_force_allocation(
    layers: Sequence[LayerInfo], candidates: Sequence[int], budgets: Mapping[str, float],
    act_bits: Callable[[int], int] = lambda b: b,
) -> Allocation | None:
    """Exhaustive reference solver for small instances (tests)."""
    best: tuple[float, dict[str, int]] | None = None
    for combo in itertools.product(sorted(candidates), repeat=len(layers)):
        if any(sum(_budget_row(layers, kind, b, li, act_bits) for li, b in zip(layers, combo)) > bound * (1 + 1e-9)
               for kind, bound in budgets.items()):
            continue
        obj = sum(li.sensitivity(b) for li, b in zip(layers, combo))
        if best is None or obj < best[0] - 1e-12:
            best = (obj, {li.name: b for li, b in zip(layers, combo)})
    return None if best is None else _allocation(layers, best[1], best[0], act_bits)
