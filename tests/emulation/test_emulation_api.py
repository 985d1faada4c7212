"""approximate_ / restore_ on a small quantized model: equality with a brute-force emulator, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from emulation_ref import counted_aminmax, random_appmul, ref_conv2d, ref_linear
from torch import nn

from fames.emulation import approximate_, assignment_of, load_assignment, restore_, save_assignment
from fames.emulation.api import load_offsets, offsets_path, save_offsets
from fames.multipliers.appmul import AppMul
from fames.multipliers.library import Library
from fames.quant.api import quant_layers, quantize_
from fames.quant.layers import QConv2d


def _model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 5),
    )
    x = torch.randn(3, 2, 6, 6)
    bits = {"0": {"w": 4, "a": 5}, "2": 2, "4": {"w": 3, "a": 8}, "7": {"w": 8, "a": 6}}
    quantize_(net, bits, calibration=x)
    return net.eval(), x


def _library(net: nn.Module) -> tuple[Library, dict[str, str]]:
    rng = np.random.default_rng(0)
    entries, assignment = [], {}
    for i, (name, layer) in enumerate(quant_layers(net)):
        fmt = layer.operand_format
        mul = random_appmul(fmt, rng, ("random", "zero", "trunc", "random")[i], name=f"{fmt.name}_m{i}")
        entries += [mul, AppMul.exact(fmt)]
        assignment[name] = mul.name
    return Library(entries), assignment


def _reference_emulator(mul: AppMul):
    def emulate(layer, x_int, w_int):
        if isinstance(layer, QConv2d):
            acc = ref_conv2d(x_int, w_int, mul.table, mul.fmt, layer.stride[0], layer.padding,
                             layer.dilation[0], layer.groups)
        else:
            acc = ref_linear(x_int, w_int, mul.table, mul.fmt)
        return acc.to(x_int.dtype)
    return emulate


def test_matches_brute_force_and_is_reversible() -> None:
    net, x = _model()
    lib, assignment = _library(net)
    with torch.no_grad():
        exact = net(x)
        approximate_(net, assignment, lib)
        assert assignment_of(net) == assignment
        got = net(x)
        restore_(net)
        assert torch.equal(net(x), exact)
        for name, layer in quant_layers(net):
            layer.emulator = _reference_emulator(lib.get(assignment[name]))
        ref = net(x)
        approximate_(net, assignment, lib)
        assert torch.equal(net(x), got)
        approximate_(net, {}, lib)
        assert assignment_of(net) == {} and torch.equal(net(x), exact)
    assert torch.equal(got, ref)
    assert not torch.equal(got, exact)


def test_a_layers_own_codes_are_not_range_checked_again(monkeypatch) -> None:
    """In a model's forward each layer's activation codes come from its own quantizer (clamped, then the
    weight quantizer runs too): once the weight plans exist, no emulated layer reads its codes' range."""
    net, x = _model()
    lib, assignment = _library(net)
    with torch.no_grad():
        approximate_(net, assignment, lib)
        first = net(x)
        calls = counted_aminmax(monkeypatch)
        assert torch.equal(net(x), first)
    assert calls[0] == 0


def test_exact_multiplier_and_partial_assignment() -> None:
    net, x = _model()
    lib, assignment = _library(net)
    names = list(assignment)
    with torch.no_grad():
        exact = net(x)
        approximate_(net, {n: f"{layer.operand_format.name}_exact" for n, layer in quant_layers(net)}, lib)
        assert torch.equal(net(x), exact)
        approximate_(net, {names[1]: assignment[names[1]]}, lib)
        assert assignment_of(net) == {names[1]: assignment[names[1]]}
        assert net.get_submodule(names[0]).emulator is None


def test_errors_name_the_problem() -> None:
    net, x = _model()
    lib, assignment = _library(net)
    first = next(iter(assignment))
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        approximate_(net, {"nope": assignment[first]}, lib)
    with pytest.raises(ValueError, match="unknown multiplier 'missing'"):
        approximate_(net, {first: "missing"}, lib)
    fmt = net.get_submodule(first).operand_format.name
    other = [n for n in assignment.values() if not n.startswith(fmt)][0]
    with pytest.raises(ValueError, match="needs operand format"):
        approximate_(net, {first: other}, lib)
    with pytest.raises(TypeError):
        approximate_(net, [first], lib)
    assert assignment_of(net) == {}  # nothing attached by failed calls


def test_gradients_flow_straight_through() -> None:
    net, x = _model()
    lib, assignment = _library(net)
    approximate_(net, assignment, lib)
    net.train()
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad and p.dim() > 1)


def test_assignment_json_round_trip(tmp_path) -> None:
    assignment = {"features.0": "u4xs4_trunc", "fc": "s8xs8_exact"}
    path = save_assignment(assignment, tmp_path / "a.json")
    assert load_assignment(path) == assignment
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_assignment(tmp_path / "bad.json")


def test_offsets_json_round_trip(tmp_path) -> None:
    offsets = {"features.0": [3, -2, 0], "fc": [0.5, 1]}
    path = save_offsets(offsets, offsets_path(tmp_path / "a.json"))
    assert path.name == "a.offsets.json"
    assert load_offsets(path) == {"features.0": [3.0, -2.0, 0.0], "fc": [0.5, 1.0]}
    for bad in ("[1, 2]", '{"fc": "x"}', '{"fc": [true]}'):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(ValueError, match="JSON object"):
            load_offsets(tmp_path / "bad.json")


def test_weight_plan_follows_weight_updates() -> None:
    net, x = _model()
    lib, assignment = _library(net)
    approximate_(net, assignment, lib)
    with torch.no_grad():
        net(x)
        for _, layer in quant_layers(net):
            layer.weight.mul_(-1.0)
        got = net(x)
        for name, layer in quant_layers(net):
            layer.emulator = _reference_emulator(lib.get(assignment[name]))
        assert torch.equal(got, net(x))
