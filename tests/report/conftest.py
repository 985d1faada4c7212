"""A small trained quantized model on digits, a made-up library and one pipeline result (module-wide)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_helpers import quick_train

from fames.circuits.generators.families import exact, truncated
from fames.multipliers import AppMul, HardwareFigures, OperandFormat
from fames.multipliers.library import Library


def made_up_library(formats: list[OperandFormat]) -> Library:
    """Exact + truncated generator designs, invented energies (no EDA tools); one entry lacks Verilog."""
    lib = Library()
    for fmt in formats:
        e0 = 0.01 * fmt.a_bits * fmt.w_bits
        hw = lambda e: HardwareFigures(1.0, 1.0, e * 100, e, clock_ns=10.0)  # noqa: E731
        lib.add(exact(fmt).to_appmul(hw(e0)))
        for k in (1, 2, 3, 4):
            lib.add(truncated(fmt, k).to_appmul(hw(e0 * (1 - 0.12 * k))))
        t = fmt.exact_table()
        lib.add(AppMul(f"{fmt.name}_lsb0", fmt, (t >> 1) << 1, hw(e0 * 0.93), "custom"))  # no Verilog
    return lib


@pytest.fixture(scope="module")
def run_result():
    from fames.data import load_dataset
    from fames.energy import layer_specs
    from fames.pipeline import run_pipeline
    from fames.quant import quantize_

    torch.manual_seed(0)
    data = load_dataset("digits")
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    quick_train(model, data.train.x, data.train.y)
    quantize_(model, {"0": 4, "2": 4, "5": 4}, calibration=data.train.x[:256])
    lib = made_up_library(sorted({s.fmt for s in layer_specs(model).values()}, key=lambda f: f.name))
    result = run_pipeline(model, {"model": "seq", "float_test_accuracy": 95.0}, data, lib, 3.0,
                          calibration=256, loss_points=4, inputs={"hashes": {"data": "x"}},
                          select_kwargs={"groups": 64, "max_evaluations": 4})
    return result
