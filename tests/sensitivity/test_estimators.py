"""Estimators vs their definitions evaluated on per-sample brute-force quantities."""

from __future__ import annotations

import numpy as np
import pytest

from fames.multipliers import AppMul, OperandFormat
from fames.sensitivity.counting import CountingResult, LayerCounts
from fames.sensitivity.estimators import (
    ESTIMATORS,
    estimate_layer,
    layer_sensitivity,
    sensitivity_table,
)

FMT = OperandFormat.parse("u2xs3")


def _counts(n: int = 6, groups: int | None = None, seed: int = 0) -> tuple[LayerCounts, np.ndarray]:
    rng = np.random.default_rng(seed)
    per_sample = rng.normal(size=(n, *FMT.shape))
    g = groups or n
    sums = np.stack([per_sample[i::g].sum(0) for i in range(g)])
    sizes = np.bincount(np.arange(n) % g)
    return LayerCounts("l", FMT, per_sample.mean(0), sums, sizes), per_sample


def _muls(seed: int = 1) -> list[AppMul]:
    rng = np.random.default_rng(seed)
    exact = FMT.exact_table()
    out = [AppMul.exact(FMT)]
    for i in range(3):
        out.append(AppMul(f"m{i}", FMT, exact + rng.integers(-2, 3, size=FMT.shape)))
    return out


def test_per_sample_definitions() -> None:
    lc, per_sample = _counts()
    muls = _muls()
    for m in muls[1:]:
        e = m.error_table.astype(float)
        t = np.array([(c * e).sum() for c in per_sample])
        want = {
            "first_order": t.mean(),
            "fisher": np.mean(t + 0.5 * t**2),
            "curvature": 0.5 * np.mean(t**2),
            "abs": np.mean(np.abs(t)),
            "rms": np.sqrt(np.mean(t**2)),
        }
        for name in ESTIMATORS:
            got = estimate_layer(lc, [m], name)[m.name]
            assert got == pytest.approx(want[name], rel=1e-12), name
    assert estimate_layer(lc, muls[:1], "fisher") == {muls[0].name: 0.0}


def test_grouped_first_order_is_exact_and_curvature_positive() -> None:
    lc_full, _ = _counts(n=12)
    lc_grp, _ = _counts(n=12, groups=4)
    m = _muls()[1]
    assert estimate_layer(lc_grp, [m], "first_order")[m.name] == pytest.approx(
        estimate_layer(lc_full, [m], "first_order")[m.name], rel=1e-12)
    assert estimate_layer(lc_grp, [m], "curvature")[m.name] > 0


def test_table_and_errors() -> None:
    lc, _ = _counts()
    res = CountingResult({"l": lc}, lc.n_samples, 0.0, True, 0.0)
    other = AppMul.exact(OperandFormat.parse("u2xs2"))
    table = sensitivity_table(res, _muls() + [other], "abs")
    assert set(table["l"]) == {m.name for m in _muls()}
    assert layer_sensitivity(lc) > 0
    with pytest.raises(ValueError, match="unknown estimator"):
        sensitivity_table(res, _muls(), "magic")
    with pytest.raises(ValueError, match="format"):
        estimate_layer(lc, [other])
