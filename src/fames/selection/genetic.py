"""ALWANN-style baseline: NSGA-II (pymoo) over per-layer multiplier choices.

Objectives (both minimised): relative multiplier energy ``cost / cost_exact`` and ``1 - accuracy`` measured
by a full emulated evaluation of every new individual on the validation split (repeated genomes are
served from a cache and not counted again). The accuracy budget is a pymoo inequality constraint
``G = drop - budget <= 0``, so NSGA-II's constraint domination ranks feasible individuals first and
infeasible ones by how far they exceed the budget. The answer is the cheapest evaluated individual whose
measured drop is within the budget (point estimate, as ALWANN does).

Initial population: random per-layer choices are almost all infeasible at a tight budget (a random
substitution in every layer), which would leave NSGA-II without a feasible point and inflate FAMES' speedup
against it. As ALWANN-style searches do with sensible initialisations, the first generation is seeded with
the all-exact individual, single-layer substitutions (random layer, random candidate) and few-layer mixes
(2 .. `max_mix_layers` random layers), drawn from `seed`; random individuals only fill what is left.

Long searches (hours: the GA's plateau) can be stopped and resumed. ``journal=`` appends every evaluation
(genome, energy, error rate, measured seconds) to a JSON-lines file as it happens; a later call with the
same journal and settings replays the journaled evaluations instead of running them again. The search is
deterministic given its seed and the fitness values, so it retraces the same path and goes on where the
last sitting stopped. Its clock counts a replayed evaluation at its journaled seconds, so the history's
times are those of one uninterrupted run. ``time_limit=`` (on that clock) stops a sitting: an individual
created later is answered as infeasible without evaluation (and not journaled), so it cannot become the
answer. ``patience=`` stops the search the same way once that many evaluations in a row found no cheaper
feasible individual: a stopping rule that says where the GA's plateau is, on its own evaluations rather than
on a machine's clock (journaled evaluations count too, so a replay with the same patience stops where the
run stopped).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

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
        feasible: evaluated individuals within budget so far (all-exact included).
        stopped: the sitting's time limit was reached during this generation (the last record).
    """

    generation: int
    evaluations: int
    seconds: float
    best_reduction_pct: float
    feasible: int = 0
    stopped: bool = False


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
        settings: the search's settings (population, generations, seed, operators, budget constraint and
            the initial-population seeding: how many individuals of each kind).
        stopped: the time limit ended the search before its last generation.
        replayed: evaluations served from the journal (included in `evaluations` and `seconds`).
    """

    assignment: dict[str, str]
    reduction_pct: float
    accuracy: float
    base_accuracy: float
    history: list[GenerationRecord]
    evaluations: int
    seconds: float
    front: list[tuple[float, float]] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    stopped: bool = False
    replayed: int = 0


def read_journal(path: str | os.PathLike) -> tuple[dict, list[dict], bool]:
    """Header, evaluations in the order they were made, and whether an unfinished last line (a sitting
    killed in the middle of a write) was left out, of an `EvaluationJournal` file.

    Raises:
        ValueError: not a genetic-search journal.
    """
    path = Path(path)
    text = path.read_text()
    lines = text.splitlines()
    unfinished = bool(text) and not text.endswith("\n")
    if unfinished:
        lines = lines[:-1]
    try:
        return json.loads(lines[0]), [json.loads(line) for line in lines[1:] if line.strip()], unfinished
    except (json.JSONDecodeError, IndexError) as exc:
        raise ValueError(f"{path}: not a genetic-search journal ({exc})") from None


class EvaluationJournal:
    """Append-only JSON-lines record of a genetic search's evaluations, so that a long search can resume.

    The first line is a header (the search space and settings); a journal written under another header
    is refused. Each further line is one evaluation: ``{"choice": [...], "energy": e, "error": r,
    "seconds": s}``, written and flushed as soon as it is measured, so an interrupted search loses nothing.
    """

    def __init__(self, path: str | os.PathLike, header: dict) -> None:
        self.path = Path(path)
        self.entries: dict[tuple[int, ...], tuple[float, float, float]] = {}
        header = json.loads(json.dumps(header))  # as it reads back
        if self.path.is_file() and self.path.stat().st_size > 0:
            found, rows, unfinished = read_journal(self.path)
            if unfinished:  # a sitting killed in the middle of a write: drop the partial line
                log.warning("%s: ignoring an unfinished last line", self.path)
                text = self.path.read_text()
                self.path.write_text(text[: text.rfind("\n") + 1])
            if found != header:
                diff = sorted(k for k in set(found) | set(header) if found.get(k) != header.get(k))
                raise ValueError(f"{self.path}: journal of another search (differs in {', '.join(diff)}); "
                                 "use a new journal file for these settings")
            for row in rows:
                self.entries[tuple(row["choice"])] = (row["energy"], row["error"], row["seconds"])
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(header) + "\n")

    def get(self, choice: tuple[int, ...]) -> tuple[float, float, float] | None:
        """``(relative energy, error rate, seconds)`` journaled for `choice`, or None."""
        return self.entries.get(choice)

    def add(self, choice: tuple[int, ...], energy: float, error: float, seconds: float) -> None:
        """Append one evaluation (flushed to disk at once)."""
        self.entries[choice] = (energy, error, seconds)
        with self.path.open("a") as f:
            f.write(json.dumps({"choice": list(choice), "energy": energy, "error": error,
                                "seconds": seconds}) + "\n")


class _Problem(ElementwiseProblem):
    """Two objectives (relative energy, error rate) and one constraint ``drop - budget <= 0``."""

    def __init__(self, n_options: list[int], fitness) -> None:
        super().__init__(n_var=len(n_options), n_obj=2, n_ieq_constr=1, xl=np.zeros(len(n_options)),
                         xu=np.array(n_options, dtype=float) - 1, vtype=int)
        self.fitness = fitness

    def _evaluate(self, x, out, *args, **kwargs) -> None:
        out["F"], out["G"] = self.fitness(tuple(int(round(v)) for v in x))


def seed_population(n_options: list[int], exact: list[int], pop_size: int, rng: np.random.Generator,
                    max_mix_layers: int = 3, single_fraction: float = 0.5) -> tuple[np.ndarray, dict]:
    """Distinct initial genomes: all-exact, single-layer substitutions, few-layer mixes, then random.

    Args:
        n_options: options per (free) layer; exact: index of each layer's exact option.
        pop_size: individuals wanted (fewer when the space is smaller).
        rng: the generator every random choice is drawn from.
        max_mix_layers: most layers substituted in a mix.
        single_fraction: share of the population given to single-layer substitutions.

    Returns:
        ``(genomes (k, n_layers) int array, {"all_exact": 1, "single": .., "mix": .., "random": ..})``.
    """
    n_layers = len(n_options)
    subs = [[o for o in range(n) if o != e] for n, e in zip(n_options, exact, strict=True)]
    layers = [i for i in range(n_layers) if subs[i]]
    space = int(np.prod(np.array(n_options, dtype=float)))
    target = min(pop_size, space)
    seen: dict[tuple[int, ...], str] = {tuple(exact): "all_exact"}

    def fill(kind: str, want: int, draw, tries: int) -> None:
        for _ in range(tries):
            if len(seen) >= want:
                return
            g = draw()
            if g is not None:
                seen.setdefault(g, kind)

    def single() -> tuple[int, ...] | None:
        if not layers:
            return None
        g, i = list(exact), int(rng.choice(layers))
        g[i] = int(rng.choice(subs[i]))
        return tuple(g)

    def mix() -> tuple[int, ...] | None:
        if len(layers) < 2:
            return None
        k = int(rng.integers(2, min(max_mix_layers, len(layers)) + 1))
        g = list(exact)
        for i in rng.choice(layers, size=k, replace=False):
            g[int(i)] = int(rng.choice(subs[int(i)]))
        return tuple(g)

    def rand() -> tuple[int, ...]:
        return tuple(int(rng.integers(0, n)) for n in n_options)

    n_single = sum(len(s) for s in subs)
    fill("single", min(target, 1 + min(n_single, max(1, round(single_fraction * target)))), single, 50 * target)
    fill("mix", target, mix, 50 * target)
    fill("random", target, rand, 50 * target)
    genomes = np.array(list(seen), dtype=float).reshape(len(seen), n_layers)
    counts = {kind: sum(1 for v in seen.values() if v == kind) for kind in ("all_exact", "single", "mix", "random")}
    return genomes, counts


class _History(Callback):
    """Records every generation; ends the run once the time limit or the patience has stopped the search."""

    def __init__(self, record) -> None:
        super().__init__()
        self.record = record

    def notify(self, algorithm) -> None:
        if self.record(algorithm.n_gen):
            algorithm.termination.force_termination = True


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
    max_mix_layers: int = 3,
    journal: str | os.PathLike | None = None,
    time_limit: float | None = None,
    patience: int | None = None,
) -> GeneticResult:
    """NSGA-II over per-layer choices with measured accuracy (the baseline FAMES is compared with).

    Args:
        model: the quantized model; left with exact multipliers on return.
        library: the `Library` the option names refer to.
        problem: per-layer options and energies (risks are ignored).
        evaluator: ``model -> per-sample correctness`` on the validation split.
        budget_pts: accuracy budget in points: the constraint ``drop - budget_pts <= 0``, the answer and the
            convergence record.
        pop_size: population size.
        generations: number of generations.
        seed: seed of the initial population and of pymoo (the search is deterministic given it).
        apply_fn: ``(model, assignment, library)``; default `approximate_`.
        max_mix_layers: most layers substituted in a seeded few-layer mix.
        journal: JSON-lines file to append every evaluation to, and to replay from when it exists (it must
            come from a search with the same space and settings; more generations are fine).
        time_limit: seconds (journaled time included) after which no new individual is evaluated.
        patience: evaluations in a row without a cheaper feasible individual after which no new individual
            is evaluated (None: no such stop).

    Returns:
        A `GeneticResult`.

    Raises:
        ValueError: `pop_size` < 2, `generations` < 1, `patience` < 1, or a journal of another search.
    """
    if pop_size < 2 or generations < 1:
        raise ValueError(f"need pop_size >= 2 and generations >= 1, got {pop_size} and {generations}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 evaluation, got {patience}")
    apply_fn = apply_fn or default_apply()
    start = time.perf_counter()
    replayed_seconds, replayed = 0.0, 0
    stopped_at: float | None = None
    out_of_patience = False
    log_book = None
    if journal is not None:
        log_book = EvaluationJournal(journal, {
            "kind": "fames genetic-search journal", "layers": problem.layers, "options": problem.options,
            "exact": list(problem.exact), "budget_pts": budget_pts, "pop_size": pop_size, "seed": seed,
            "max_mix_layers": max_mix_layers})

    def elapsed() -> float:
        return time.perf_counter() - start + replayed_seconds

    def relative_energy(choice: tuple[int, ...]) -> float:
        return problem.choice_cost(list(choice))[0] / ref_cost

    def journaled(choice: tuple[int, ...]) -> tuple[float, float, float] | None:
        return log_book.get(choice) if log_book is not None else None

    def measure(choice: tuple[int, ...], assignment: dict[str, str]) -> tuple[float, float]:
        """``(relative energy, error rate)`` of `choice`: from the journal, else evaluated (and journaled)."""
        nonlocal replayed_seconds, replayed
        energy = relative_energy(choice)
        if (hit := journaled(choice)) is not None:
            replayed_seconds += hit[2]
            replayed += 1
            return energy, hit[1]
        t = time.perf_counter()
        apply_fn(model, assignment, library)
        err = 1.0 - float(np.mean(evaluator(model)))
        if log_book is not None:
            log_book.add(choice, energy, err, time.perf_counter() - t)
        return energy, err

    ref_cost = problem.choice_cost(problem.exact)[0]
    base_err = measure(tuple(problem.exact), {})[1]
    base_acc = 100.0 * (1.0 - base_err)
    cache: dict[tuple[int, ...], tuple[float, float]] = {tuple(problem.exact): (1.0, base_err)}
    history: list[GenerationRecord] = []

    free = [i for i, o in enumerate(problem.options) if len(o) > 1]  # layers with a real choice

    def full(genome: tuple[int, ...]) -> tuple[int, ...]:
        choice = list(problem.exact)
        for i, g in zip(free, genome, strict=True):
            choice[i] = g
        return tuple(choice)

    best_energy, last_gain = 1.0, 1  # cheapest feasible relative energy, evaluations when it was found

    def must_stop(choice: tuple[int, ...]) -> bool:
        """Whether `choice` (not yet in the cache) is answered without evaluation: the patience ran out
        (journaled or not), or the time limit (not journaled)."""
        nonlocal stopped_at, out_of_patience
        if not out_of_patience and patience is not None and len(cache) - last_gain >= patience:
            out_of_patience = True
            stopped_at = elapsed() if stopped_at is None else stopped_at
            log.warning("GA: no cheaper feasible individual in the last %d evaluations (%d in all): stopping",
                        patience, len(cache))
        if out_of_patience:
            return True
        if journaled(choice) is None and time_limit is not None and (
                stopped_at is not None or elapsed() > time_limit):
            if stopped_at is None:
                stopped_at = elapsed()
                log.warning("GA time limit %.0f s reached after %d evaluations: stopping", time_limit, len(cache))
            return True
        return False

    def fitness(genome: tuple[int, ...]) -> tuple[list[float], list[float]]:
        nonlocal best_energy, last_gain
        choice = full(genome)
        if choice not in cache:
            if must_stop(choice):
                return [relative_energy(choice), 1.0], [base_acc - budget_pts]  # infeasible, never the answer
            cache[choice] = measure(choice, problem.assignment(choice))
            energy, err = cache[choice]
            if base_acc - 100.0 * (1.0 - err) <= budget_pts + 1e-9 and energy < best_energy:
                best_energy, last_gain = energy, len(cache)
        energy, err = cache[choice]
        drop = base_acc - 100.0 * (1.0 - err)
        return [energy, err], [drop - budget_pts]

    def within_budget() -> list[tuple[tuple[int, ...], float, float]]:
        return [(c, e, 100.0 * (1.0 - err)) for c, (e, err) in cache.items()
                if base_acc - 100.0 * (1.0 - err) <= budget_pts + 1e-9]

    def best_within_budget() -> tuple[tuple[int, ...], float, float]:
        return min(within_budget(), key=lambda t: t[1])

    def record(gen: int) -> bool:
        """Append the generation's record; True once the time limit or the patience stopped the search."""
        if history and history[-1].stopped:
            return True  # pymoo may report once more while it winds down
        _, energy, _ = best_within_budget()
        stopped = stopped_at is not None
        history.append(GenerationRecord(gen, len(cache), stopped_at if stopped else elapsed(),
                                        100.0 * (1.0 - energy), len(within_budget()), stopped))
        return stopped

    n_free = [len(problem.options[i]) for i in free]
    initial, seeding = seed_population(n_free, [problem.exact[i] for i in free], pop_size,
                                       np.random.default_rng(seed), max_mix_layers)
    operators = {"crossover": "SBX(prob=0.9, eta=3) + rounding", "mutation": "PM(eta=3) + rounding",
                 "eliminate_duplicates": True}
    settings = {"algorithm": "NSGA-II", "pop_size": pop_size, "generations": generations, "seed": seed,
                "objectives": ["energy / energy_exact", "1 - accuracy"],
                "constraint": f"drop_pts - {budget_pts} <= 0", "budget_pts": budget_pts, "patience": patience,
                **operators,
                "seeding": {**seeding, "max_mix_layers": max_mix_layers, "source": "numpy default_rng(seed)"},
                "free_layers": len(free)}
    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=initial if free else IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    res = None
    try:
        if free:
            res = minimize(_Problem(n_free, fitness), algorithm,
                           ("n_gen", generations), seed=seed, callback=_History(record), verbose=False)
    finally:
        apply_fn(model, {}, library)
    choice, energy, acc = best_within_budget()
    front = []
    if res is not None and res.F is not None:
        front = [(100.0 * (1.0 - f[0]), 100.0 * (1.0 - f[1])) for f in np.atleast_2d(res.F)
                 if f[1] < 1.0]  # individuals left unevaluated after a stop are no part of the front
    seconds = stopped_at if stopped_at is not None else elapsed()
    log.info("NSGA-II: %d evaluations (%d replayed from the journal), %.1f s, best reduction %.2f%%",
             len(cache), replayed, seconds, 100 * (1 - energy))
    return GeneticResult(problem.assignment(choice), 100.0 * (1.0 - energy), acc, base_acc, history,
                         len(cache), seconds, front, settings, stopped_at is not None, replayed)
