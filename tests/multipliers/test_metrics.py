"""Error metrics against brute-force loops over code pairs."""

from __future__ import annotations

import numpy as np
import pytest

from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat
from fames.multipliers.metrics import error_metrics


def _brute(mul: AppMul, weights) -> dict[str, float]:
    fmt = mul.fmt
    pairs = []
    for r, u in enumerate(fmt.a_codes().tolist()):
        for c, v in enumerate(fmt.w_codes().tolist()):
            w = 1.0 if weights is None else float(weights[r][c])
            pairs.append((u * v, int(mul.table[r][c]) - u * v, w))
    total = sum(w for _, _, w in pairs)
    med = sum(w * abs(e) for _, e, w in pairs) / total
    bias = sum(w * e for _, e, w in pairs) / total
    nz = [(x, e, w) for x, e, w in pairs if x != 0]
    mred = sum(w * abs(e) / abs(x) for x, e, w in nz) / sum(w for _, _, w in nz)
    return {
        "med": med,
        "nmed": med / max(abs(x) for x, _, _ in pairs),
        "mred": mred,
        "error_rate": sum(w for _, e, w in pairs if e != 0) / total,
        "wce": max(abs(e) for _, e, w in pairs if w > 0),
        "bias": bias,
        "variance": sum(w * (e - bias) ** 2 for _, e, w in pairs) / total,
    }


@pytest.mark.parametrize("name", ["u3xs2", "s2xs3", "u4xu4", "s3xu2"])
@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_match_brute_force(name: str, weighted: bool) -> None:
    fmt = OperandFormat.parse(name)
    rng = np.random.default_rng(len(name) + weighted)
    err = rng.integers(-5, 6, size=fmt.shape) * (rng.random(fmt.shape) < 0.4)
    mul = AppMul("m", fmt, fmt.exact_table() + err)
    weights = None
    if weighted:
        weights = rng.random(fmt.shape) * (rng.random(fmt.shape) < 0.7)
        weights[0, 0] = 0.0
    got = error_metrics(mul, weights).to_dict()
    for key, value in _brute(mul, weights).items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_exact_multiplier_has_zero_error() -> None:
    m = AppMul.exact(OperandFormat.parse("s4xs4"))
    assert all(v == 0 for v in m.metrics().to_dict().values())


def test_weight_validation() -> None:
    m = AppMul.exact(OperandFormat.parse("u2xu2"))
    with pytest.raises(ValueError, match="shape"):
        error_metrics(m, np.ones((3, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        error_metrics(m, -np.ones((4, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        error_metrics(m, np.zeros((4, 4)))
