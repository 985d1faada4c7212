"""MAC counting vs closed forms and energy figures vs hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fames.energy import adder_pj_per_bit, count_macs, layer_specs, model_energy
from fames.multipliers import AppMul, HardwareFigures
from fames.multipliers.library import Library
from fames.quant import quantize_


def _hw(e: float) -> HardwareFigures:
    return HardwareFigures(area_um2=1.0, delay_ns=1.0, power_uw=e * 100, energy_pj=e, clock_ns=10.0)


def _model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, groups=2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    quantize_(net, {"0": {"w": 3, "a": 4}, "2": 2, "5": 2}, calibration=torch.rand(4, 1, 8, 8))
    return net


def test_count_macs_closed_form() -> None:
    net = _model()
    macs = count_macs(net, torch.rand(3, 1, 8, 8))
    assert macs == {"0": 8 * 8 * 4 * 1 * 9, "2": 3 * 3 * 4 * 2 * 9, "5": 36 * 5}
    specs = layer_specs(net)
    assert specs["2"].fan_in == 18 and specs["2"].acc_bits == 2 + 2 + 5


def test_model_energy_by_hand() -> None:
    net = _model()
    macs = count_macs(net, torch.rand(1, 1, 8, 8))
    specs = layer_specs(net)
    f0, f2 = specs["0"].fmt, specs["2"].fmt
    lib = Library([
        AppMul.exact(f0, hardware=_hw(0.6)),
        AppMul.exact(f2, hardware=_hw(0.2)),
        AppMul("cheap", f2, f2.exact_table() // 2 * 2, hardware=_hw(0.1)),
    ])
    if specs["5"].fmt != f2:
        lib.add(AppMul.exact(specs["5"].fmt, hardware=_hw(0.2)))
    e_bit = adder_pj_per_bit(lib)
    extra = [] if specs["5"].fmt == f2 else [0.2 / 4]
    assert e_bit == pytest.approx(np.median([0.6 / 12, 0.2 / 4] + extra))
    rep = model_energy(macs, {"2": "cheap"}, lib, specs)
    ref = macs["0"] * 0.6 + macs["2"] * 0.2 + macs["5"] * 0.2
    got = macs["0"] * 0.6 + macs["2"] * 0.1 + macs["5"] * 0.2
    assert rep.reference_pj == pytest.approx(ref)
    assert rep.multiplier_pj == pytest.approx(got)
    assert rep.reduction_pct == pytest.approx(100 * (1 - got / ref))
    adders = sum(macs[k] * specs[k].acc_bits * e_bit for k in macs)
    assert rep.mac_reduction_pct == pytest.approx(100 * (1 - (got + adders) / (ref + adders)))
    assert rep.mac_reduction_pct < rep.reduction_pct
    with pytest.raises(ValueError, match="format"):
        model_energy(macs, {"0": "cheap"}, lib, specs)
    with pytest.raises(ValueError, match="no multiplier"):
        model_energy(macs, {}, lib)
