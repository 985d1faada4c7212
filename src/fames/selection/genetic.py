"""ALWANN-style baseline: NSGA-II (pymoo) over per-layer multiplier choices.

Objectives (both minimised): relative multiplier energy ``cost / cost_exact`` and ``1 - accuracy`` measured
by a full emulated evaluation of every new individual on the validation split (repeated genomes are
served from a cache and not counted again). The answer is the cheapest evaluated individual whose
measured drop is within the budget (point estimate, as ALWANN does).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.problem import ElementwiseProblem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize
from torch import nn

from fames.selection.evaluate import ApplyFn, Evaluator, default_apply
from fames.selection.ilp import KnapsackProblem

log = logging.getLogger(__name__)


@dataclass
class GenerationRecord:
    """Convergence after one generation.

    Attributes:
        generation: 1-based generation index.
        evaluations: distinct full evaluations so far.
        seconds: wall time since the search started.
        best_reduction_pct: best multiplier-energy reduction among evaluated individuals within budget.
    """

    generation: int
    evaluations: int
    seconds: float
    best_reduction_pct: float


@dataclass
class GeneticResult:
    """Outcome of the genetic search.

    Attributes:
        assignment: best individual within budget (all exact if none).
        reduction_pct: its multiplier-energy reduction.
        accuracy: its validation accuracy (percent); base_accuracy: the exact model's.
        history: one `GenerationRecord` per generation.
        evaluations: distinct full evaluations (baseline included).
        seconds: total wall time.
        front: ``(reduction_pct, accuracy)`` of the final non-dominated set.
    """

    assignment: dict[str, str]
    reduction_pct: float
    accuracy: float
    base_accuracy: float
    history: list[GenerationRecord]
    evaluations: int
    seconds: float
    front: list[tuple[float, float]] = field(default_factory=list)


class _Problem(ElementwiseProblem):
    def __init__(self, n_options: list[int], fitness) -> None:
        super().__init__(n_var=len(n_options), n_obj=2, xl=np.zeros(len(n_options)),
                         xu=np.array(n_options, dtype=float) - 1, vtype=int)
        self.fitness = fitness

    def _evaluate(self, x, out, *args, **kwargs) -> None:
        out["F"] = self.fitness(tuple(int(round(v)) for v in x))


class _History(Callback):
    def __init__(self, record) -> None:
        super().__init__()
        self.record = record

    def notify(self, algorithm) -> None:
        self.record(algorithm.n_gen)


def genetic_search(
    model: nn.Module,
    library,
    problem: KnapsackProblem,
    evaluator: Evaluator,
    budget_pts: float = 1.0,
    *,
    pop_size: int = 20,
    generations: int = 10,
    seed: int = 0,
    apply_fn: ApplyFn | None = None,
) -> GeneticResult:
    """NSGA-II over per-layer choices with measured accuracy (the baseline FAMES is compared with).

    Args:
        model: the quantized model; left with exact multipliers on return.
        library: the `Library` the option names refer to.
        problem: per-layer options and energies (risks are ignored).
        evaluator: ``model -> per-sample correctness`` on the validation split.
        budget_pts: accuracy budget in points, used to pick the answer and the convergence record.
        pop_size: population size.
        generations: number of generations.
        seed: pymoo seed.
        apply_fn: ``(model, assignment, library)``; default `approximate_`.

    Returns:
        A `GeneticResult`.

    Raises:
        ValueError: `pop_size` < 2 or `generations` < 1.
    """
    if pop_size < 2 or generations < 1:
        raise ValueError(f"need pop_size >= 2 and generations >= 1, got {pop_size} and {generations}")
    apply_fn = apply_fn or default_apply()
    start = time.perf_counter()
    ref_cost = problem.choice_cost(problem.exact)[0]
    apply_fn(model, {}, library)
    base_acc = 100.0 * float(np.mean(evaluator(model)))
    cache: dict[tuple[int, ...], tuple[float, float]] = {tuple(problem.exact): (1.0, 1.0 - base_acc / 100.0)}
    history: list[GenerationRecord] = []

    free = [i for i, o in enumerate(problem.options) if len(o) > 1]  # layers with a real choice

    def full(genome: tuple[int, ...]) -> tuple[int, ...]:
        choice = list(problem.exact)
        for i, g in zip(free, genome, strict=True):
            choice[i] = g
        return tuple(choice)

    def fitness(genome: tuple[int, ...]) -> list[float]:
        choice = full(genome)
        if choice not in cache:
            apply_fn(model, problem.assignment(choice), library)
            acc = float(np.mean(evaluator(model)))
            cache[choice] = (problem.choice_cost(choice)[0] / ref_cost, 1.0 - acc)
        return list(cache[choice])

    def best_within_budget() -> tuple[tuple[int, ...], float, float]:
        ok = [(c, e, 100.0 * (1.0 - err)) for c, (e, err) in cache.items()
              if base_acc - 100.0 * (1.0 - err) <= budget_pts + 1e-9]
        return min(ok, key=lambda t: t[1])

    def record(gen: int) -> None:
        _, energy, _ = best_within_budget()
        history.append(GenerationRecord(gen, len(cache), time.perf_counter() - start, 100.0 * (1.0 - energy)))

    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    res = None
    try:
        if free:
            res = minimize(_Problem([len(problem.options[i]) for i in free], fitness), algorithm,
                           ("n_gen", generations), seed=seed, callback=_History(record), verbose=False)
    finally:
        apply_fn(model, {}, library)
    choice, energy, acc = best_within_budget()
    front = []
    if res is not None and res.F is not None:
        front = [(100.0 * (1.0 - f[0]), 100.0 * (1.0 - f[1])) for f in np.atleast_2d(res.F)]
    seconds = time.perf_counter() - start
    log.info("NSGA-II: %d evaluations, %.1f s, best reduction %.2f%%", len(cache), seconds,
             100 * (1 - energy))
    return GeneticResult(problem.assignment(choice), 100.0 * (1.0 - energy), acc, base_acc, history,
                         len(cache), seconds, front)
