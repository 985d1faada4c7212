"""Anchors: one measured substitution per layer scales overestimated layers' estimates down."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from train_helpers import quick_train, truncation_library

from fames.emulation.api import approximate_
from fames.energy import layer_specs
from fames.quant import quantize_
from fames.selection.anchors import MAX_DOWN, anchor_choice, correction, measure_anchors
from fames.selection.evaluate import default_apply, evaluate_model
from fames.selection.ilp import KnapsackProblem


def test_anchor_choice_is_cheapest_within_the_risk_limit() -> None:
    risk = np.array([0.0, 0.001, 0.01, 0.5, 0.015])
    cost = np.array([10.0, 8.0, 6.0, 1.0, 6.0])
    assert anchor_choice(risk, cost, 0.02) == 2  # 3 is cheaper but too risky; 4 ties on cost, riskier
    assert anchor_choice(risk, cost, 0.005) == 1
    assert anchor_choice(risk, cost, 0.0005) is None  # the exact candidate (risk 0) is never an anchor
    assert anchor_choice(np.array([-0.01, 0.0]), np.array([1.0, 2.0]), 0.02) is None


def test_correction_only_scales_down_within_its_limit() -> None:
    assert correction(0.01, 0.005) == pytest.approx(0.5)
    assert correction(0.01, 0.03) == 1.0  # underestimated: left to the budget search
    assert correction(0.01, 0.0001) == pytest.approx(1 / MAX_DOWN)
    assert correction(0.01, -0.002) == pytest.approx(1 / MAX_DOWN)
    assert correction(0.01, 0.0001, max_down=4.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="positive estimate"):
        correction(0.0, 0.01)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    from fames.data import load_digits_dataset

    data = load_digits_dataset()
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    quick_train(model, data.train.x, data.train.y, epochs=3, lr=1e-2)
    quantize_(model, {"0": 3, "3": 4}, calibration=data.train.x[:256])
    fmts = sorted({spec.fmt for spec in layer_specs(model).values()}, key=lambda f: f.name)
    return model, (data.train.x[:256], data.train.y[:256]), truncation_library(fmts)


def test_measure_anchors_against_single_substitutions(setup) -> None:
    model, cal, lib = setup
    specs = layer_specs(model)
    names = {layer: [f"{specs[layer].fmt.name}_exact"] + [f"{specs[layer].fmt.name}_trunc{k}" for k in (1, 2, 3)]
             for layer in ("0", "3")}
    risks = {"0": np.array([0.0, -1e-4, 1e-3, 5.0]),  # anchor: trunc2 (trunc3 is estimated too risky)
             "3": np.array([0.0, 7.0, 8.0, 9.0])}  # nothing within the limit: no anchor, estimates kept
    problem = KnapsackProblem(["0", "3"], [names["0"], names["3"]], [np.array([4.0, 3, 2, 1])] * 2,
                              [risks["0"], risks["3"]], [0, 0])
    before = [r.copy() for r in problem.risk]
    corrected, anchors = measure_anchors(model, lib, problem, cal, default_apply(True), max_risk=0.02,
                                         batch_size=100)

    # the measurement, independently: the anchor alone in the model, mean calibration loss against exact
    approximate_(model, {}, lib)
    base = evaluate_model(model, *cal).loss.mean()
    approximate_(model, {"0": names["0"][2]}, lib)
    measured = evaluate_model(model, *cal).loss.mean() - base
    approximate_(model, {}, lib)

    assert [(a.layer, a.multiplier) for a in anchors] == [("0", names["0"][2])]
    anchor = anchors[0]
    assert anchor.estimated == pytest.approx(1e-3)
    assert anchor.measured == pytest.approx(measured, abs=1e-9)
    assert anchor.factor == pytest.approx(correction(1e-3, measured))
    expected = np.array([0.0, -1e-4, 1e-3 * anchor.factor, 5.0 * anchor.factor])  # positive estimates only
    np.testing.assert_allclose(corrected.risk[0], expected)
    np.testing.assert_array_equal(corrected.risk[1], risks["3"])
    for r, b in zip(problem.risk, before, strict=True):  # the input problem is left as it was
        np.testing.assert_array_equal(r, b)
    assert evaluate_model(model, *cal).loss.mean() == pytest.approx(base)  # model left exact


def test_measure_anchors_rejects_bad_limits(setup) -> None:
    model, cal, lib = setup
    problem = KnapsackProblem(["0"], [["u3xs3_exact"]], [np.array([1.0])], [np.array([0.0])], [0])
    with pytest.raises(ValueError, match="max_risk"):
        measure_anchors(model, lib, problem, cal, default_apply(True), max_risk=0.0)
