"""Bit allocation: the ILP equals brute force; Hutchinson's trace estimates the exact Hessian trace."""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fames.quant.bitalloc import LayerInfo, brute_force_allocation, hessian_traces, solve_allocation


def random_layers(rng: random.Random, n: int, cands):
    layers = []
    for i in range(n):
        pert = {b: rng.uniform(0.5, 2.0) * 4.0 ** (-b) for b in cands}
        layers.append(LayerInfo(f"l{i}", rng.randint(10, 500), rng.randint(100, 5000), rng.uniform(0.01, 3), pert))
    return layers


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", ["avg_bits", "size_kb", "bops"])
def test_ilp_matches_brute_force(seed, kind):
    rng = random.Random(seed)
    cands = [2, 3, 4, 8]
    layers = random_layers(rng, rng.randint(2, 5), cands)
    lo = brute_force_allocation(layers, cands, {kind: float("inf")})
    totals = {"avg_bits": lo.avg_bits, "size_kb": lo.size_kb, "bops": lo.bops}
    budgets = {kind: totals[kind] * rng.uniform(0.3, 0.8)}
    if seed % 3 == 0:  # a second, simultaneous budget
        other = "bops" if kind != "bops" else "avg_bits"
        budgets[other] = totals[other] * rng.uniform(0.5, 0.9)
    ref = brute_force_allocation(layers, cands, budgets)
    if ref is None:
        with pytest.raises(ValueError, match="no bit allocation fits"):
            solve_allocation(layers, cands, budgets)
        return
    got = solve_allocation(layers, cands, budgets)
    assert got.objective == pytest.approx(ref.objective, rel=1e-6, abs=1e-12)


def test_fixed_and_errors():
    layers = random_layers(random.Random(0), 3, [2, 8])
    got = solve_allocation(layers, [2, 8], {"avg_bits": 8}, fixed={"l0": 8})
    assert got.bits["l0"] == 8
    with pytest.raises(ValueError, match="unknown layer"):
        solve_allocation(layers, [2, 8], {"avg_bits": 8}, fixed={"nope": 8})
    with pytest.raises(ValueError, match="budget kind"):
        solve_allocation(layers, [2, 8], {"watts": 8})


def test_hutchinson_trace_matches_exact_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    est = hessian_traces(model, x, y, samples=3000, seed=1)
    for name, layer in (("0", model[0]), ("2", model[2])):
        w0 = layer.weight.detach().clone()

        def loss_of(w, layer=layer):
            saved = layer.weight
            del layer.weight
            layer.weight = w
            out = F.cross_entropy(model(x), y)
            del layer.weight
            layer.weight = saved
            return out

        hess = torch.autograd.functional.hessian(loss_of, w0)
        exact = torch.diagonal(hess.reshape(w0.numel(), w0.numel())).sum().item()
        assert est[name] == pytest.approx(exact, rel=0.1, abs=1e-3)
