"""Error metrics of a multiplier, uniform or weighted by an operand distribution."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ErrorMetrics:
    """Standard AppMul error metrics (all over code pairs, weighted by their probability).

    med: mean |E|; nmed: med / max |exact product|; mred: mean |E| / |exact| over non-zero exact
    products; error_rate: P(E != 0); wce: max |E| over pairs of non-zero probability; bias: mean E;
    variance: var E.
    """

    med: float
    nmed: float
    mred: float
    error_rate: float
    wce: float
    bias: float
    variance: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def error_metrics(mul, weights: np.ndarray | None = None) -> ErrorMetrics:
    """Metrics of `mul` (an AppMul) under `weights` (shape of its table, non-negative; None = uniform).

    Raises:
        ValueError: when `weights` has the wrong shape, negative entries or zero total.
    """
    exact = mul.fmt.exact_table().astype(np.float64)
    err = mul.error_table.astype(np.float64)
    if weights is None:
        p = np.full(exact.shape, 1.0 / exact.size)
    else:
        p = np.asarray(weights, dtype=np.float64)
        if p.shape != exact.shape:
            raise ValueError(f"weights shape {p.shape} does not match table shape {exact.shape}")
        if np.any(p < 0) or p.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        p = p / p.sum()
    abs_err = np.abs(err)
    med = float((p * abs_err).sum())
    max_prod = float(np.abs(exact).max())
    nonzero = exact != 0
    p_nz = p[nonzero]
    rel = p_nz * abs_err[nonzero] / np.abs(exact[nonzero])
    mred = float(rel.sum() / p_nz.sum()) if p_nz.sum() > 0 else 0.0
    bias = float((p * err).sum())
    support = p > 0
    return ErrorMetrics(
        med=med,
        nmed=med / max_prod,
        mred=mred,
        error_rate=float(p[err != 0].sum()),
        wce=float(abs_err[support].max()) if support.any() else 0.0,
        bias=bias,
        variance=float((p * (err - bias) ** 2).sum()),
    )
