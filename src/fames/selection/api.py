"""`select`: the whole FAMES flow in one call (counting -> estimates -> ILP -> budget search)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from fames.energy import EnergyReport, count_macs, layer_specs, model_energy
from fames.selection.anchors import DEFAULT_ANCHOR_RISK, Anchor, anchor_note, measure_anchors
from fames.selection.budget import (
    DEFAULT_BISECTION,
    DEFAULT_MAX_EVALUATIONS,
    BudgetResult,
    DropBound,
    ParetoPoint,
    search_budget,
)
from fames.selection.evaluate import EVALUATION_BATCH, ApplyFn, default_apply, make_evaluator
from fames.selection.ilp import KnapsackProblem, build_problem
from fames.sensitivity.compensation import OffsetTable, choose_compensation
from fames.sensitivity.counting import counting_matrices
from fames.sensitivity.estimators import DEFAULT_ESTIMATOR, ESTIMATORS, layer_sensitivities, sensitivity_table

log = logging.getLogger(__name__)

# Counting convolutions in float32 (sums stay float64): ~2x faster on CPUs than float64, the matrices move by
# ~1e-7 of their largest entry (far below the calibration sample's own noise).
COUNTING_DTYPE = torch.float32
# Micro-batch of the counting pass, whatever the evaluation batch: on one core, 512 calibration images took
# 4.5 s in batches of 128 against 6.5 s in batches of 512 (VGG; ResNet 10 s against 11-13 s), with the same
# matrices to ~1e-16 of their largest entry (cache-sized activations and gradients).
COUNTING_BATCH = 128
# Calibration images of the counting pass. 512 rather than 1,024: over calibration seeds 0-4 and the three
# reference models the selections averaged 33.4 % against 32.0 % (12 of 15 seed pairs higher), with half
# the counting time and memory (`benchmarks/results/estimator_seeds/`, measured with the budget search that
# still named culprits by wrong answers; README "Selection cost").
DEFAULT_CALIBRATION = 512


@dataclass
class Selection:
    """Result of `select`.

    Attributes:
        assignment: ``{layer: multiplier name}`` for every quantized layer (apply with `approximate_`).
        energy: `EnergyReport` of the assignment (multiplier and MAC energy, reductions).
        reduction_pct: multiplier-energy reduction against exact multipliers at the same bit widths.
        estimated_dl: summed estimate of the mean calibration-loss change.
        base_accuracy / accuracy: validation top-1 (percent) of the exact and the selected model.
        drop: paired drop bound on the validation split (None when nothing approximate was chosen).
        tau: the ILP bound of the choice (None for the exact fallback).
        estimator: estimator used.
        explanation: how the choice was made and how sure it is.
        pareto: the tau sweep front (energy, estimated dL, measured accuracy where evaluated).
        layer_sensitivity: AppMul-independent per-layer score.
        evaluations: emulated evaluations run (whole or prefix of the validation split).
        evaluation_passes: their cost in full validation passes.
        timings: seconds per stage (counting, estimation, ilp_sweep, evaluation, total).
        offset_table: offsets of any (layer, multiplier) pair, e.g. for the Pareto points; None without
            compensation.
        pad_taps: padding convention of the selection.
        anchors: the measured per-layer corrections of the estimates (`fames.selection.anchors`; empty
            with ``anchor=False``).
        problem: the knapsack candidates with the estimates the budget search started from (anchored; the
            search's own rescaling is not in it).
    """

    assignment: dict[str, str]
    energy: EnergyReport
    reduction_pct: float
    estimated_dl: float
    base_accuracy: float
    accuracy: float
    drop: DropBound | None
    tau: float | None
    estimator: str
    explanation: str
    pareto: list[ParetoPoint]
    layer_sensitivity: dict[str, float]
    evaluations: int
    timings: dict[str, float] = field(default_factory=dict)
    evaluation_passes: float = 0.0
    offset_table: OffsetTable | None = None
    pad_taps: bool = True
    anchors: list[Anchor] = field(default_factory=list)
    problem: KnapsackProblem | None = None

    @property
    def offsets(self) -> dict[str, list[int]]:
        """``{layer: accumulator offsets per output channel}`` of the chosen assignment's mean-error
        compensation (layers with a non-zero offset only; empty without compensation)."""
        return self.offsets_for(self.assignment) or {}

    @property
    def compensated(self) -> bool:
        """Whether the selection used mean-error compensation."""
        return self.offset_table is not None

    def offsets_for(self, assignment: dict[str, str]) -> dict[str, list[int]] | None:
        """Compensation offsets of any assignment over the same candidates (None without compensation)."""
        return None if self.offset_table is None else self.offset_table.for_assignment(assignment)

    def apply(self, model: nn.Module, library, assignment: dict[str, str] | None = None) -> nn.Module:
        """Emulate `assignment` (default: the selection's) in `model` with its compensation offsets."""
        from fames.emulation.api import approximate_

        chosen = self.assignment if assignment is None else assignment
        return approximate_(model, chosen, library, pad_taps=self.pad_taps, offsets=self.offsets_for(chosen))


def select(
    model: nn.Module,
    library,
    calibration: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    max_accuracy_drop: float = 1.0,
    estimator: str = DEFAULT_ESTIMATOR,
    *,
    groups: int = 32,  # 32 vs 256 groups: same Spearman in benchmarks/fidelity.py, 8x less memory
    pad_taps: bool = True,
    confidence: float | None = None,
    n_taus: int = 40,
    max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
    batch_size: int = EVALUATION_BATCH,
    apply_fn: ApplyFn | None = None,
    seed: int = 0,
    compensate: bool = True,
    attribution: str = "loss",
    rescale_layers: bool = True,
    bisection: str = DEFAULT_BISECTION,
    anchor: bool = True,
    anchor_risk: float = DEFAULT_ANCHOR_RISK,
) -> Selection:
    """Pick a multiplier per quantized layer: least multiplier energy within an accuracy budget.

    Args:
        model: quantized model (`fames.quant.quantize_`), trained; left with exact multipliers.
        library: `Library` of AppMuls with hardware figures (uncharacterised entries are skipped).
        calibration: ``(x, y)`` for the counting pass (one forward/backward over it).
        validation: ``(x, y)`` held out for the measured evaluations of the budget search.
        max_accuracy_drop: budget in top-1 percentage points.
        estimator: a key of `fames.sensitivity.ESTIMATORS`.
        groups: micro-batch groups of the per-sample counting matrices.
        pad_taps: padding convention shared by counting and emulation.
        confidence: one-sided level of the paired-drop bound that must stay within the budget (default:
            `default_confidence(max_evaluations)`, 80 % at the default 8 passes; stricter as more candidates
            are measured, against the winner's curse).
        n_taus: size of the tau sweep.
        max_evaluations: cost of the budget search's evaluations at most, in validation passes.
        batch_size: batch size of the evaluation passes (the counting pass uses at most `COUNTING_BATCH`).
        apply_fn: ``(model, assignment, library)``; default `approximate_` with `pad_taps` (and the
            compensation offsets). A custom one needs ``compensate=False``.
        seed: bootstrap seed.
        compensate: where the estimate says it helps, remove a multiplier's mean error per output channel
            with a constant on the accumulator (free: it rides on the bias addition;
            `fames.sensitivity.compensation`); the estimates and every evaluation include it.
        attribution: how the budget search finds the substitution to ban after a rejection (`search_budget`).
        rescale_layers: after a ban, scale the layer's estimates by its measured loss change (`search_budget`).
        bisection: which candidate of the bracket the budget search measures next (`search_budget`).
        anchor: before the search, measure one substitution per layer on the calibration images and scale
            overestimated layers' estimates down (`fames.selection.anchors`).
        anchor_risk: the anchors are the cheapest candidates estimated at most this loss change.

    Returns:
        A `Selection`.

    Raises:
        ValueError: unknown estimator, negative budget, a layer without candidates, or a custom
            `apply_fn` with compensation.

    Example:
        >>> # sel = fames.select(qnet, builtin_library(), (x_cal, y_cal), (x_val, y_val), 1.0)
        >>> # sel.apply(qnet, lib)  # the assignment with its compensation offsets; sel.reduction_pct
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if max_accuracy_drop < 0:
        raise ValueError(f"max_accuracy_drop must be >= 0 points, got {max_accuracy_drop}")
    if apply_fn is not None and compensate:
        raise ValueError("a custom apply_fn cannot apply compensation offsets: pass compensate=False")
    t0 = time.perf_counter()
    (apply_fn or default_apply(pad_taps))(model, {}, library)  # count at the exact model
    counts = counting_matrices(model, calibration, groups=groups, pad_taps=pad_taps,
                               batch_size=min(batch_size, COUNTING_BATCH), dtype=COUNTING_DTYPE)
    t_count = time.perf_counter() - t0

    t1 = time.perf_counter()
    characterised = [m for m in library if m.hardware is not None]
    if len(characterised) < len(list(library)):
        log.warning("skipping %d multipliers without hardware figures",
                    len(list(library)) - len(characterised))
    table = sensitivity_table(counts, characterised, estimator)
    offsets = None
    if compensate:
        table, pairs = choose_compensation(table, sensitivity_table(counts, characterised, estimator, True))
        offsets = OffsetTable({n: lc.channel for n, lc in counts.layers.items()}, library, pairs)
    apply_fn = apply_fn or default_apply(pad_taps, offsets)
    for layer, cands in table.items():
        if not cands:
            fmt = counts.layers[layer].fmt.name
            raise ValueError(f"layer {layer!r} ({fmt}) has no characterised multiplier in the library")
    t_est = time.perf_counter() - t1

    macs = count_macs(model, validation[0][:1])
    specs = layer_specs(model)
    problem = build_problem(macs, table, library)
    anchors: list[Anchor] = []
    t_anchor = 0.0
    if anchor:
        t2 = time.perf_counter()
        problem, anchors = measure_anchors(model, library, problem, calibration, apply_fn, max_risk=anchor_risk,
                                           batch_size=batch_size)
        t_anchor = time.perf_counter() - t2
    budget: BudgetResult = search_budget(
        model, library, problem, make_evaluator(*validation, batch_size=batch_size), max_accuracy_drop,
        confidence=confidence, n_taus=n_taus, max_evaluations=max_evaluations, apply_fn=apply_fn, seed=seed,
        attribution=attribution, rescale_layers=rescale_layers, bisection=bisection,
    )
    energy = model_energy(macs, budget.assignment, library, specs)
    chosen = budget.chosen
    timings = {"counting": t_count, "estimation": t_est, "anchoring": t_anchor,
               **{k: v for k, v in budget.timings.items() if k != "total"}}
    timings["total"] = time.perf_counter() - t0
    return Selection(
        assignment=budget.assignment,
        energy=energy,
        reduction_pct=energy.reduction_pct,
        estimated_dl=chosen.estimated_dl if chosen else 0.0,
        base_accuracy=budget.base_accuracy,
        accuracy=chosen.accuracy if chosen and chosen.accuracy is not None else budget.base_accuracy,
        drop=chosen.measured if chosen else None,
        tau=chosen.tau if chosen else None,
        estimator=estimator,
        explanation=budget.explanation + anchor_note(anchors, len(problem.layers)),
        pareto=budget.points,
        layer_sensitivity=layer_sensitivities(counts),
        evaluations=budget.evaluations,
        timings=timings,
        evaluation_passes=budget.passes,
        offset_table=offsets,
        pad_taps=pad_taps,
        anchors=anchors,
        problem=problem,
    )
