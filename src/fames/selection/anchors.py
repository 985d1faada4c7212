"""Per-layer correction of the estimates from one measured substitution per layer ("anchors").

The Taylor estimates rank a layer's candidates well (Spearman ~0.94 per model) but their *scale* is off by
layer, in both directions, and the ILP trusts the scale: on ResNet at calibration seed 0 the estimate of
``stages.0.2.conv1 = u4xs3_optrunc_a2_b0`` is 0.017 where the measured loss change is 0.0003, while
``stages.2.1.conv2 = u4xs2_trunc_k5`` is estimated at 0.015 and measures 0.33. Overestimated layers keep
the ILP from the few aggressive substitutions a genetic search finds (its 32.33 % ResNet assignment sums
to 0.048 in fames' estimates, five times fames' own accepted choice, yet drops only 0.74 pt);
underestimated aggressive candidates cost the budget search rejected evaluations.

So before the search, each layer gets one *anchor*: its cheapest candidate estimated at most
`DEFAULT_ANCHOR_RISK`, measured alone (the mean loss change on the calibration images, with the
compensation the selection applies). Where the anchor measures below its estimate, every positive estimate
of the layer is scaled by ``measured / estimated``, clipped to ``[1 / MAX_DOWN, 1]`` (``1 / MAX_DOWN``
when the measured change is <= 0). The correction only goes down: the budget search already scales a layer
up when a measured rejection shows it underestimated (`fames.selection.budget`), and an anchor measured
above its estimate says little about the layer's milder candidates. Tried on ResNet, calibration seeds
0-3 (scratch runs, README "Selection cost"):

- down only: 31.07 / 28.45 / 31.95 / 31.95 % (without anchors 28.92 / 30.52 / 33.33 / 25.86 %);
- also scaling the whole layer up: 22.98 % at seed 0;
- also scaling up the candidates estimated at least as high as the anchor: 31.65 / 27.57 / 25.76 / 25.82 %
  (and VGG seed 0 36.23 % against 39.89 %);
- replacing only the anchor's own estimate by its measurement: 2.21 % at seed 0 (noisy single-layer
  measurements, summed, let the ILP pile up failures); raising it only where the measurement is higher:
  29.28 / 25.54 / 32.58 / 34.06 %;
- two anchors per layer (at most 0.005 and 0.02), the factor interpolated in log risk: 25.17 / 26.07 %
  on seeds 0-1.

Over seeds 0-4 the defaults (anchors at 0.02, ``MAX_DOWN`` 8) average 30.7 %; anchors at 0.01 gave 28.43 /
26.63 / 29.91 / 34.73 / 28.08 % (mean 29.6), ``MAX_DOWN`` 16 gave 27.08 / 30.53 / 31.95 / 35.11 / 29.93 %
(mean 30.9, within the seeds' noise of the default, worse at seed 0).

The measurements reuse the exact model's stored layer outputs up to the substituted layer
(`fames.selection.replay`), so a layer costs the forward pass from itself on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fames.selection.evaluate import EVALUATION_BATCH, ApplyFn, make_evaluator
from fames.selection.ilp import KnapsackProblem

log = logging.getLogger(__name__)

# Anchor: the cheapest candidate estimated at most this mean loss change (nats). About the loss change a
# 1-point budget allows on the reference models (their accepted choices measure 0.01-0.03 on calibration),
# so anchors sit where the ILP's decisions are made; 0.05 gave 29.75 % on ResNet seed 0 against 31.07 %.
DEFAULT_ANCHOR_RISK = 0.02
# Most an anchor scales a layer down: single-layer changes below ~1e-3 are within the measurement's noise.
MAX_DOWN = 8.0


@dataclass
class Anchor:
    """One layer's measured substitution and the correction it implies.

    Attributes:
        layer: layer name.
        multiplier: the anchor candidate.
        estimated: its estimated mean loss change.
        measured: its measured mean loss change on the calibration images (alone in the model).
        factor: factor on every positive estimate of the layer (``1 / MAX_DOWN`` to 1).
    """

    layer: str
    multiplier: str
    estimated: float
    measured: float
    factor: float


def anchor_choice(risk: np.ndarray, cost: np.ndarray, max_risk: float) -> int | None:
    """Index of the cheapest candidate with ``0 < risk <= max_risk`` (None when there is none)."""
    ok = np.flatnonzero((risk > 0) & (risk <= max_risk))
    if ok.size == 0:
        return None
    return int(ok[np.lexsort((risk[ok], cost[ok]))[0]])


def correction(estimated: float, measured: float, max_down: float = MAX_DOWN) -> float:
    """Factor on a layer's positive estimates when its anchor is estimated at `estimated` > 0 and measured
    at `measured`: ``measured / estimated`` clipped to ``[1 / max_down, 1]``."""
    if estimated <= 0:
        raise ValueError(f"an anchor needs a positive estimate, got {estimated}")
    return float(np.clip(measured / estimated, 1.0 / max_down, 1.0)) if measured > 0 else 1.0 / max_down


def measure_anchors(
    model: nn.Module,
    library,
    problem: KnapsackProblem,
    calibration: tuple[torch.Tensor, torch.Tensor],
    apply_fn: ApplyFn,
    *,
    max_risk: float = DEFAULT_ANCHOR_RISK,
    max_down: float = MAX_DOWN,
    batch_size: int = EVALUATION_BATCH,
) -> tuple[KnapsackProblem, list[Anchor]]:
    """Measure one anchor per layer and return the corrected problem (a copy) and the anchors.

    Args:
        model: the quantized model; left with exact multipliers on return.
        library: the `Library` the problem's names refer to.
        problem: knapsack candidates with their estimates.
        calibration: ``(x, y)`` the estimates were counted on.
        apply_fn: ``(model, assignment, library)``, with the selection's compensation.
        max_risk: anchors are the cheapest candidates estimated at most this.
        max_down: most an anchor scales a layer down.
        batch_size: samples per forward pass.

    Returns:
        ``(corrected problem, anchors)``; layers without a candidate in ``(0, max_risk]`` keep their
        estimates and have no anchor.
    """
    if max_risk <= 0 or max_down < 1:
        raise ValueError(f"need max_risk > 0 and max_down >= 1, got {max_risk} and {max_down}")
    t0 = time.perf_counter()
    evaluator = make_evaluator(*calibration, batch_size=batch_size)
    apply_fn(model, {}, library)
    base = float(evaluator.results(model).loss.mean())
    corrected, anchors = problem.copy(), []
    try:
        for i, layer in enumerate(problem.layers):
            j = anchor_choice(problem.risk[i], problem.cost[i], max_risk)
            if j is None:
                continue
            multiplier = problem.options[i][j]
            apply_fn(model, {layer: multiplier}, library)
            measured = float(evaluator.results(model).loss.mean()) - base
            estimated = float(problem.risk[i][j])
            factor = correction(estimated, measured, max_down)
            corrected.scale_layer(i, factor)
            anchors.append(Anchor(layer, multiplier, estimated, measured, factor))
            log.debug("anchor %s=%s: estimated %.4g, measured %.4g (x%.3g)", layer, multiplier, estimated,
                      measured, factor)
    finally:
        apply_fn(model, {}, library)
    log.info("anchors: %d layers measured in %.1f s, %d scaled down", len(anchors), time.perf_counter() - t0,
             sum(a.factor < 1 for a in anchors))
    return corrected, anchors


def anchor_note(anchors: list[Anchor], n_layers: int) -> str:
    """A clause for the selection's explanation: how many layers' estimates the anchors scaled down."""
    if not anchors:
        return ""
    down = sum(a.factor < 1 for a in anchors)
    return (f"; estimates of {down} of {n_layers} layers scaled down by a measured substitution "
            f"({len(anchors)} measured)")
