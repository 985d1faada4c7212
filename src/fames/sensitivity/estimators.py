"""Taylor estimates of the loss change of every (layer, AppMul) pair from the counting matrices.

With ``T_g = <C_g, E>`` (``C_g`` = sum of the per-sample matrices of micro-batch ``g``, ``m_g`` samples,
``N = sum m_g``; see `fames.sensitivity.counting`) and ``t_n = <C_{l,n}, E>`` the change of sample ``n``'s
loss (so ``mean_n t_n = <C_l, E> = dL1``):

- ``first_order``: ``dL1 = <C_l, E>``.
- ``fisher``: ``dL1 + 0.5 * mean_n t_n^2`` (empirical-Fisher second order, ``mean_n (t_n + t_n^2 / 2)``).
- ``curvature``: ``0.5 * mean_n t_n^2`` (the Fisher term alone; robust when the mean gradient cancels).
- ``abs``: ``mean_n |t_n|``.
- ``rms``: ``sqrt(mean_n t_n^2)`` (same ranking as ``curvature``, magnitudes of a loss change).

With micro-batches (``m_g > 1``) ``mean_n t_n^2`` is estimated by ``(1/N) sum_g T_g^2``: unbiased for
zero-mean independent ``t_n`` (upward biased by ``m_g * mean(t)^2`` otherwise), and ``mean_n |t_n|`` by
``(1/N) sum_g sqrt(m_g) |T_g|`` (exact for a Gaussian ``t``). Both are exact when ``G >= N``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from fames.multipliers.appmul import AppMul
from fames.sensitivity.counting import CountingResult, LayerCounts

log = logging.getLogger(__name__)

# (first-order term (M,), group terms T (M, G), group sizes (G,), N) -> estimates (M,)
Estimator = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def _first_order(first: np.ndarray, t: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    return first


def _mean_square(t: np.ndarray, n: int) -> np.ndarray:
    return (t**2).sum(axis=1) / n


def _fisher(first: np.ndarray, t: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    return first + 0.5 * _mean_square(t, n)


def _curvature(first: np.ndarray, t: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    return 0.5 * _mean_square(t, n)


def _abs(first: np.ndarray, t: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    return (np.sqrt(sizes)[None, :] * np.abs(t)).sum(axis=1) / n


def _rms(first: np.ndarray, t: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    return np.sqrt(_mean_square(t, n))


ESTIMATORS: dict[str, Estimator] = {
    "first_order": _first_order,
    "fisher": _fisher,
    "curvature": _curvature,
    "abs": _abs,
    "rms": _rms,
}
# Chosen by benchmarks/fidelity.py's score (single-layer Spearman, additivity on random assignments, and the
# ranking of the 7,858 assignments that the long NSGA-II runs measured, benchmarks/journal_ranking.py). On
# single substitutions curvature, abs and fisher tie (0.93); on whole assignments near a 1-point budget the
# sum of curvature ranks far better (Spearman 0.59 / 0.69 on VGG / ResNet against 0.44 / 0.41 for the sum of
# abs, which was the default until then): mean squares add over layers whose errors are independent, mean
# absolute values do not. fames.select with it: 30.0 / 37.2 / 29.9 % on LeNet / VGG / ResNet (abs: 31.9 /
# 36.9 / 25.9 %), test drops 0.36 / 0.56 pt on VGG / ResNet (abs: 0.61 / 0.93; benchmarks/results/estimator_abs/
# is the record made with abs). Never negative; fisher's first-order part is noise.
DEFAULT_ESTIMATOR = "curvature"


def estimate_layer(counts: LayerCounts, muls: Iterable[AppMul], estimator: str = DEFAULT_ESTIMATOR,
                   compensate: bool = False) -> dict[str, float]:
    """Estimates of the mean-loss change for each multiplier in `muls` on one layer.

    Args:
        counts: the layer's counting matrices.
        muls: AppMuls of the layer's operand format (others raise).
        estimator: a key of `ESTIMATORS`.
        compensate: estimate the multiplier with its mean error removed by an accumulator offset
            (`fames.sensitivity.compensation`); needs ``counts.channel``.

    Returns:
        ``{mul name: estimate}``; exact multipliers get exactly 0.

    Raises:
        ValueError: unknown estimator or a multiplier of another operand format.
    """
    fn = _lookup(estimator)
    muls = list(muls)
    for m in muls:
        if m.fmt != counts.fmt:
            raise ValueError(
                f"multiplier {m.name!r} has format {m.fmt.name}, "
                f"layer {counts.name!r} needs {counts.fmt.name}"
            )
    if not muls:
        return {}
    errors = np.stack([m.error_table.astype(np.float64) for m in muls])  # (M, |A|, |W|)
    first = np.einsum("ab,mab->m", counts.total, errors)
    t = np.einsum("gab,mab->mg", counts.groups, errors)
    if compensate:
        if counts.channel is None:
            raise ValueError(f"layer {counts.name!r}: counting matrices without channel statistics")
        offsets = counts.channel.offsets(errors)  # (M, O)
        shift = offsets @ counts.channel.grads.T  # (M, G): sum_o G_{g,o} offset_o
        t = t - shift
        first = first - shift.sum(axis=1) / counts.n_samples
    values = fn(first, t, counts.group_sizes.astype(np.float64), counts.n_samples)
    return {m.name: (0.0 if m.is_exact else float(v)) for m, v in zip(muls, values, strict=True)}


def sensitivity_table(counts: CountingResult, library: Iterable[AppMul], estimator: str = DEFAULT_ESTIMATOR,
                      compensate: bool = False) -> dict[str, dict[str, float]]:
    """Estimate every (layer, multiplier) candidate: one small dot product per pair.

    Args:
        counts: result of `counting_matrices`.
        library: any iterable of AppMul (a `fames.multipliers.library.Library` included); every layer
            gets the multipliers of its operand format.
        estimator: a key of `ESTIMATORS`.
        compensate: estimate with mean-error compensation (see `estimate_layer`).

    Returns:
        ``{layer: {mul name: estimated change of the mean calibration loss}}``.

    Raises:
        ValueError: unknown estimator.
    """
    _lookup(estimator)
    muls = list(library)
    table = {}
    for name, lc in counts.layers.items():
        cands = [m for m in muls if m.fmt == lc.fmt]
        if not cands:
            log.warning("no multiplier of format %s for layer %s", lc.fmt.name, name)
        table[name] = estimate_layer(lc, cands, estimator, compensate)
    return table


def layer_sensitivity(counts: LayerCounts) -> float:
    """One AppMul-independent score per layer: ``0.5 * mean_n ||C_{l,n}||_F^2``.

    It is the expected ``curvature`` estimate for an error table of i.i.d. zero-mean unit-variance
    entries, so it ranks layers by how much a random multiplier error hurts them.

    Args:
        counts: the layer's counting matrices.

    Returns:
        The score (non-negative float).
    """
    return float(0.5 * (counts.groups**2).sum() / counts.n_samples)


def layer_sensitivities(counts: CountingResult) -> dict[str, float]:
    """`layer_sensitivity` of every layer."""
    return {name: layer_sensitivity(lc) for name, lc in counts.layers.items()}


def _lookup(estimator: str) -> Estimator:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[estimator]
