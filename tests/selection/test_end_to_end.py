"""End to end on sklearn digits: tiny quantized CNN trained in the test, truncation-like AppMuls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from train_helpers import quick_train, truncation_library

import fames
from fames.emulation.api import approximate_
from fames.energy import count_macs, layer_specs, model_energy
from fames.quant import quantize_
from fames.selection.evaluate import evaluate_model


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    from fames.data import load_digits_dataset

    data = load_digits_dataset()
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    quick_train(model, data.train.x, data.train.y, epochs=4, lr=1e-2)
    quantize_(model, {"0": 4, "2": {"w": 3, "a": 3}, "5": 4}, calibration=data.train.x[:256])
    quick_train(model, data.train.x, data.train.y, epochs=2, lr=2e-3)
    fmts = sorted({spec.fmt for spec in layer_specs(model).values()}, key=lambda f: f.name)
    return model, data, truncation_library(fmts)


def test_select_end_to_end(setup) -> None:
    model, data, lib = setup
    cal = (data.train.x[:256], data.train.y[:256])
    val = (data.val.x, data.val.y)
    base = evaluate_model(model, *val).accuracy
    assert base > 80.0
    sel = fames.select(model, lib, cal, val, max_accuracy_drop=2.0, groups=64, max_evaluations=5)
    assert set(sel.assignment) == {"0", "2", "5"}
    assert sel.base_accuracy == pytest.approx(base)
    assert 0.0 <= sel.reduction_pct < 100.0
    assert sel.energy.mac_reduction_pct <= sel.reduction_pct
    assert sel.pareto and sel.evaluations >= 2 and sel.evaluation_passes <= 5 + 1
    assert {"counting", "estimation", "anchoring", "ilp_sweep", "evaluation", "total"} <= set(sel.timings)
    assert 0 < len(sel.anchors) <= 3 and "measured substitution" in sel.explanation
    macs = count_macs(model, val[0][:1])
    rep = model_energy(macs, sel.assignment, lib, layer_specs(model))
    assert rep.reduction_pct == pytest.approx(sel.reduction_pct)
    # the candidates the search started from hold the choice, at the energy the report gives
    problem = sel.problem
    chosen = [problem.options[i].index(sel.assignment[layer]) for i, layer in enumerate(problem.layers)]
    exact_cost = problem.choice_cost(problem.exact)[0]
    assert 100.0 * (1.0 - problem.choice_cost(chosen)[0] / exact_cost) == pytest.approx(sel.reduction_pct)
    # the measured accuracy is reproducible with the real emulation and the compensation offsets
    assert sel.compensated and set(sel.offsets) <= set(sel.assignment)
    sel.apply(model, lib)
    again = evaluate_model(model, *val).accuracy
    approximate_(model, {}, lib)
    assert again == pytest.approx(sel.accuracy)
    if sel.drop is not None:
        assert sel.drop.upper_pts <= 2.0
        assert sel.reduction_pct > 0
    assert evaluate_model(model, *val).accuracy == pytest.approx(base)  # model left exact


def test_select_without_compensation(setup) -> None:
    model, data, lib = setup
    cal = (data.train.x[:256], data.train.y[:256])
    sel = fames.select(model, lib, cal, (data.val.x, data.val.y), max_accuracy_drop=2.0, groups=64,
                       max_evaluations=3, compensate=False)
    assert not sel.compensated and sel.offsets == {}
    approximate_(model, sel.assignment, lib)
    again = evaluate_model(model, data.val.x, data.val.y).accuracy
    approximate_(model, {}, lib)
    assert again == pytest.approx(sel.accuracy)
    with pytest.raises(ValueError, match="compensate=False"):
        fames.select(model, lib, cal, (data.val.x, data.val.y), apply_fn=lambda m, a, lb: m)


def test_compensation_removes_truncation_bias(setup) -> None:
    """Truncation always rounds products down; the offsets cancel that bias, so the loss rises less."""
    model, data, lib = setup
    cal = (data.train.x[:512], data.train.y[:512])
    counts = fames.sensitivity.counting_matrices(model, cal, groups=64)
    table = fames.sensitivity.compensation.OffsetTable(
        {n: lc.channel for n, lc in counts.layers.items()}, lib)
    base = evaluate_model(model, *cal).loss.mean()
    plain, compensated = 0.0, 0.0
    for layer, lc in counts.layers.items():
        assignment = {layer: f"{lc.fmt.name}_trunc3"}
        offsets = table.for_assignment(assignment)
        assert offsets and all(v <= 0 for v in offsets[layer])  # truncation errors are <= 0, so their means
        approximate_(model, assignment, lib)
        plain += evaluate_model(model, *cal).loss.mean() - base
        approximate_(model, assignment, lib, offsets=offsets)
        compensated += evaluate_model(model, *cal).loss.mean() - base
    approximate_(model, {}, lib)
    assert compensated < 0.5 * plain


def test_estimates_track_measured_loss(setup) -> None:
    model, data, lib = setup
    cal = (data.train.x[:512], data.train.y[:512])
    counts = fames.sensitivity.counting_matrices(model, cal, groups=512)
    table = fames.sensitivity.sensitivity_table(counts, lib, "fisher")
    base = evaluate_model(model, *cal).loss.mean()
    est, meas = [], []
    for layer, cands in table.items():
        for name, value in cands.items():
            if lib.get(name).is_exact:
                continue
            approximate_(model, {layer: name}, lib)
            meas.append(evaluate_model(model, *cal).loss.mean() - base)
            est.append(value)
    approximate_(model, {}, lib)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    spearman = np.corrcoef(rank(est), rank(meas))[0, 1]
    assert spearman > 0.5
