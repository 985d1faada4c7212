"""Budget search and NSGA-II on synthetic problems whose 'measured' accuracy is a known function."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest

from fames.selection import budget
from fames.selection.budget import (
    MIN_CONFIDENCE,
    MIN_GAIN_PCT,
    default_confidence,
    paired_drop,
    search_budget,
    suspects,
    sweep,
    tau_grid,
)
from fames.selection.evaluate import EvalResult
from fames.selection.genetic import genetic_search, seed_population
from fames.selection.ilp import KnapsackProblem, solve_knapsack

N_VAL = 2000


def _problem() -> KnapsackProblem:
    # 3 layers x 3 options; option 0 exact. Risk is the true drop in points (monotone world).
    cost = [np.array([1.0, 0.7, 0.4]), np.array([2.0, 1.2, 0.9]), np.array([0.5, 0.3, 0.2])]
    risk = [np.array([0.0, 0.2, 1.5]), np.array([0.0, 0.4, 2.0]), np.array([0.0, 0.1, 0.9])]
    return KnapsackProblem(["a", "b", "c"], [["e", "x", "y"]] * 3, cost, risk, [0, 0, 0])


class FakeWorld:
    """apply_fn + evaluator: accuracy drop (points) = summed risk of the applied assignment."""

    def __init__(self, problem: KnapsackProblem) -> None:
        self.problem, self.current, self.calls = problem, {}, 0
        rng = np.random.default_rng(0)
        self.base = rng.random(N_VAL) < 0.9
        self.order = rng.permutation(np.flatnonzero(self.base))

    def apply(self, model, assignment, library) -> None:
        self.current = dict(assignment)

    def drop_of(self, assignment) -> float:
        return sum(self.problem.risk[i][self.problem.options[i].index(assignment[k])]
                   for i, k in enumerate(self.problem.layers) if k in assignment)

    def evaluate(self, model) -> np.ndarray:
        self.calls += 1
        out = self.base.copy()
        out[self.order[: int(round(self.drop_of(self.current) / 100 * N_VAL))]] = False
        return out


def test_paired_drop_definition() -> None:
    base = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1] * 50, bool)
    new = base.copy()
    new[:30] = False  # 30 lost (some were wrong already)
    new[3] = True  # one gained
    b = paired_drop(base, new, budget_pts=5.0, confidence=0.8)
    assert b.drop_pts == pytest.approx(100 * (base.mean() - new.mean()))
    assert b.n_worse - b.n_better == base.sum() - new.sum()
    assert b.upper_pts > b.drop_pts and 0 < b.prob_within_budget < 1
    assert paired_drop(base, base).upper_pts == 0.0
    with pytest.raises(ValueError):
        paired_drop(base, new[:-1])
    with pytest.raises(ValueError):
        paired_drop(base, new, confidence=1.0)


@pytest.mark.parametrize("bisection", budget.BISECTIONS)
@pytest.mark.parametrize("budget", [0.0, 0.35, 1.0, 2.0, 10.0])
def test_search_matches_exhaustive_rule(budget: float, bisection: str) -> None:
    problem = _problem()
    world = FakeWorld(problem)
    res = search_budget(None, None, problem, world.evaluate, budget, apply_fn=world.apply, n_taus=30,
                        learn_cuts=False, confidence=0.8, bisection=bisection)
    points = sweep(problem, tau_grid(problem, 30))
    costs = [s.cost for _, s in points]
    assert all(a >= b - 1e-12 for a, b in zip(costs, costs[1:], strict=False))  # energy non-increasing in tau
    # exhaustive application of the same rule over every sweep point
    ok = [s for _, s in points
          if paired_drop(world.base, _eval(world, s.assignment), budget, 0.8).upper_pts <= budget]
    if ok:
        assert res.chosen is not None
        assert res.chosen.energy_pj == pytest.approx(min(s.cost for s in ok))
    else:
        assert res.chosen is None and "exact" in res.explanation
        assert res.assignment == {"a": "e", "b": "e", "c": "e"}
    assert res.evaluations <= int(np.ceil(np.log2(len(points) + 1))) + 1
    assert world.current == {}  # model restored to exact
    assert set(res.timings) == {"ilp_sweep", "evaluation", "total"}


def _bisect(reductions: list[float], passing: int, mode: str = "reduction",
            upper: Callable[[float], float] | None = None) -> tuple[list[int], int]:
    """Bisect a front with `budget._bisection_point` at a 1-point budget: (indices measured, last accepted
    index or -1). A point's estimated loss change is its reduction / 100; `upper` gives the upper bound of
    its drop from that (default: 0.5 points for the first `passing` points, 2.0 for the rest)."""
    points = [budget.ParetoPoint(float(j), {}, 1.0 - r / 100, r, r / 100) for j, r in enumerate(reductions)]
    lo, hi, measured = -1, len(points), []
    while hi - lo > 1:
        mid = budget._bisection_point(points, list(range(lo + 1, hi)), lo, hi, mode, 1.0)
        assert lo < mid < hi
        measured.append(mid)
        up = upper(points[mid].estimated_dl) if upper else (0.5 if mid < passing else 2.0)
        points[mid].measured = budget.DropBound(up, up, 0.8, 0.5, 1000, 0, 0)
        lo, hi = (mid, hi) if up <= 1.0 else (lo, mid)
    return measured, lo


@pytest.mark.parametrize("mode", budget.BISECTIONS)
@pytest.mark.parametrize("m", [1, 2, 3, 7, 8, 15, 20, 31, 33])
def test_every_bisection_keeps_the_log2_bound(m: int, mode: str) -> None:
    rng = np.random.default_rng(m)
    for front in (np.geomspace(1.0, 80.0, m), np.sort(rng.uniform(0, 80, m)), np.linspace(1, 80, m)):
        for passing in range(m + 1):  # every boundary position, brute force
            measured, last = _bisect(list(front), passing, mode)
            assert last == passing - 1
            assert len(measured) <= int(np.ceil(np.log2(m + 1)))
            assert len(set(measured)) == len(measured)


def test_index_bisection_takes_the_index_median() -> None:
    front = list(np.geomspace(1.0, 64.0, 20))
    assert _bisect(front, 0, "index")[0] == [10, 5, 2, 1, 0]


def test_reduction_bisection_aims_at_the_middle_reduction_once_an_end_is_measured() -> None:
    front = list(np.geomspace(1.0, 64.0, 20))  # 1.0, 1.2, ... 64: most points at small reductions, as on the tau grid
    measured, _ = _bisect(front, 0)  # everything fails
    assert measured[0] == 10  # nothing measured yet: the index median (8.9 %)
    # half of 8.9 % is 4.46 %: index 7 (4.6 %), where the index median would take index 5 (3.0 %)
    assert measured[1] == 7
    measured, _ = _bisect(front, 12)  # 10 accepted, then the middle of 8.9 % and 64 % is 36.5 %: index 16 (33.2 %)
    assert measured[:3] == [10, 16, 14]  # 16 rejected: the middle of 8.9 % and 33.2 % is 21 %, index 14 (21.4 %)


def test_balanced_bisection_leaves_the_index_median_only_where_points_crowd_at_small_reductions() -> None:
    even = list(np.linspace(1.0, 80.0, 20))
    for passing in range(21):  # evenly spread reductions: the index median is never in the bottom quarter
        assert _bisect(even, passing, "balanced") == _bisect(even, passing, "index")
    crowded = list(np.geomspace(0.1, 64.0, 20))  # 0.1, 0.14, ... 64
    # index 10 (3.0 %) rejected: the index median, 5 (0.55 %), is below a quarter of 3.0 %, so the point
    # nearest 1.5 % that keeps the bound: index 7 (1.08 %; index 8, 1.52 %, would leave 8 points below)
    assert _bisect(crowded, 0, "index")[0][:2] == [10, 5]
    assert _bisect(crowded, 0, "balanced")[0][:2] == [10, 7]


def test_aimed_bisection_aims_where_the_measured_drops_reach_the_budget() -> None:
    front = list(np.linspace(2.0, 40.0, 20))  # estimated loss change = reduction / 100

    def upper(dl: float) -> float:  # drops linear in the estimate: the budget is reached at 0.23
        return dl / 0.23

    measured, last = _bisect(front, -1, "aimed", upper)
    # index 10 (0.22) first, accepted at 0.96; no rejection yet, so the middle reduction (index 15, 0.32),
    # rejected at 1.39; then the line through (0.22, 0.96) and (0.32, 1.39) reaches 1.0 at 0.23: index 11
    # (the middle reduction, 27 %, would take index 12 or 13)
    assert measured == [10, 15, 11]
    assert front[last] / 100 <= 0.23 < front[last + 1] / 100


class PrefixWorld(FakeWorld):
    """FakeWorld whose evaluator takes ``part`` (as `make_evaluator`'s), so screening is used."""

    accepts_part = True

    def __call__(self, model, part: slice | None = None) -> np.ndarray:
        return self.evaluate(model)[part or slice(None)]


class LossWorld(PrefixWorld):
    """PrefixWorld that also gives per-sample losses (`results`, as `make_evaluator`'s): the loss of each
    image grows smoothly with the true drop, so a prefix ranks substitutions even where accuracy ties, and
    the mean loss change is about the true drop, in the units of the problem's risks (as real estimates
    are in the loss's units)."""

    def results(self, model, part: slice | None = None) -> EvalResult:
        correct = self(model, part)
        return EvalResult(correct, 50.0 * (~correct) + 0.5 * self.drop_of(self.current))


def _misestimated_problem() -> tuple[KnapsackProblem, KnapsackProblem]:
    """(estimated, true): layer b's option x is estimated at 0.05 points but really costs 6 points."""
    cost = [np.array([1.0, 0.7, 0.5]), np.array([2.0, 1.0, 0.8]), np.array([0.5, 0.3, 0.2]),
            np.array([1.5, 1.2, 1.0])]
    risk = [np.array([0.0, 0.2, 0.5]), np.array([0.0, 6.0, 3.0]), np.array([0.0, 0.1, 0.3]),
            np.array([0.0, 0.15, 0.4])]
    est = [r.copy() for r in risk]
    est[1][1] = 0.05
    names = [["e", "x", "y"]] * 4
    return (KnapsackProblem(list("abcd"), names, cost, est, [0] * 4),
            KnapsackProblem(list("abcd"), names, cost, risk, [0] * 4))


@pytest.mark.parametrize("world_type", [FakeWorld, PrefixWorld, LossWorld])
def test_learned_bans_recover_from_a_misestimated_substitution(world_type) -> None:
    estimated, true = _misestimated_problem()
    world = world_type(true)
    evaluator = world if world_type is PrefixWorld else world.evaluate
    plain = search_budget(None, None, estimated, evaluator, 1.0, apply_fn=world.apply, learn_cuts=False)
    res = search_budget(None, None, estimated, evaluator, 1.0, apply_fn=world.apply, max_evaluations=20,
                        screen=500, confidence=0.8)
    assert res.chosen is not None and res.assignment["b"] != "x"
    assert paired_drop(world.base, _eval(world, res.assignment), 1.0).upper_pts <= 1.0
    # brute force over every assignment without the bad option: the search reaches the best one
    best = min(true.choice_cost(ch)[0] for ch in itertools.product(range(3), repeat=4)
               if ch[1] != 1 and paired_drop(world.base, _eval(world, true.assignment(ch)), 1.0).upper_pts <= 1.0)
    assert res.chosen.energy_pj == pytest.approx(best)
    assert plain.chosen is None or plain.chosen.energy_pj > best + 1e-9
    if world_type is PrefixWorld:
        assert res.screened >= 1
    assert world.current == {}


def test_default_confidence_grows_with_the_evaluations() -> None:
    assert default_confidence(8) == pytest.approx(0.8) and default_confidence(16) == pytest.approx(0.9)
    levels = [default_confidence(k) for k in (1, 4, 8, 12, 16, 32, 64)]
    assert levels == sorted(levels) and min(levels) == MIN_CONFIDENCE and max(levels) < 1.0
    with pytest.raises(ValueError):
        default_confidence(0)


@pytest.mark.parametrize("max_evaluations", [4, 16, 32])
def test_search_uses_the_default_confidence(max_evaluations: int) -> None:
    problem = _problem()
    world = FakeWorld(problem)
    res = search_budget(None, None, problem, world.evaluate, 10.0, apply_fn=world.apply,
                        max_evaluations=max_evaluations)
    measured = [p.measured for p in res.points if p.measured is not None]
    assert measured and {m.confidence for m in measured} == {default_confidence(max_evaluations)}


def test_suspects_exclude_reverts_to_exact() -> None:
    problem, _ = _misestimated_problem()
    ok, bad = [1, 0, 2, 0], [0, 2, 2, 1]  # a reverted to exact, b and d newly approximated, c unchanged
    assert suspects(problem, ok, bad) == [(1, 2), (3, 1)]
    assert suspects(problem, [1, 1, 1, 1], [0, 0, 0, 0]) == []


def test_knapsack_cuts_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        sizes = rng.integers(2, 4, size=4)
        cost = [np.concatenate([[5.0], rng.random(k - 1) * 5]) for k in sizes]
        risk = [np.concatenate([[0.0], rng.random(k - 1)]) for k in sizes]
        problem = KnapsackProblem(list("abcd"), [[f"o{j}" for j in range(k)] for k in sizes], cost, risk, [0] * 4)
        cuts = [[(int(i), int(rng.integers(1, sizes[i])))] for i in rng.choice(4, 2, replace=False)]
        cuts.append([(0, 1), (1, 1)])
        tau = float(rng.random() * 1.5)
        sol = solve_knapsack(problem, tau, cuts=cuts)
        ok = [ch for ch in itertools.product(*[range(k) for k in sizes])
              if problem.choice_cost(ch)[1] <= tau and all(sum(ch[i] == c for i, c in cut) < len(cut) for cut in cuts)]
        assert sol.cost == pytest.approx(min(problem.choice_cost(ch)[0] for ch in ok))
        assert all(sum(sol.choice[i] == c for i, c in cut) < len(cut) for cut in cuts)


def _eval(world: FakeWorld, assignment) -> np.ndarray:
    world.apply(None, assignment, None)
    out = world.evaluate(None)
    world.apply(None, {}, None)
    return out


def test_genetic_finds_best_on_tiny_space() -> None:
    problem = _problem()
    world = FakeWorld(problem)
    budget = 1.0
    res = genetic_search(None, None, problem, world.evaluate, budget, pop_size=12, generations=8, seed=1,
                         apply_fn=world.apply)
    ref = problem.choice_cost(problem.exact)[0]
    best = 0.0
    for choice in itertools.product(range(3), repeat=3):
        acc = 100 * _eval(world, problem.assignment(choice)).mean()
        if 100 * world.base.mean() - acc <= budget + 1e-9:
            best = max(best, 100 * (1 - problem.choice_cost(choice)[0] / ref))
    assert res.reduction_pct == pytest.approx(best)
    assert len(res.history) == 8
    assert [h.evaluations for h in res.history] == sorted(h.evaluations for h in res.history)
    assert res.evaluations <= 27
    assert res.history[-1].best_reduction_pct == pytest.approx(best)
    assert world.current == {}
    # seeded generation 0 (history[0]) already holds a feasible substitution, not just the all-exact point
    assert res.history[0].best_reduction_pct > 0 and res.history[0].feasible >= 2
    seeding = res.settings["seeding"]
    assert seeding["all_exact"] == 1 and seeding["single"] == 6 and sum(
        seeding[k] for k in ("all_exact", "single", "mix", "random")) == 12
    assert res.settings["constraint"] == "drop_pts - 1.0 <= 0" and res.settings["seed"] == 1


def test_genetic_is_deterministic() -> None:
    problem = _problem()
    runs = []
    for _ in range(2):
        world = FakeWorld(problem)
        res = genetic_search(None, None, problem, world.evaluate, 0.5, pop_size=6, generations=3, seed=4,
                             apply_fn=world.apply)
        runs.append((res.assignment, res.reduction_pct, [(h.evaluations, h.best_reduction_pct, h.feasible)
                                                         for h in res.history], res.front, world.calls))
    assert runs[0] == runs[1]


def test_genetic_tight_budget_many_layers() -> None:
    """10 layers x 3 options, every substitution costs 0.6 pt: at a 1-point budget only single-layer
    substitutions are feasible (a random individual is feasible with probability ~3e-4); the seeded
    population starts with them and the search ends at the cheapest one."""
    n = 10
    cost = [np.array([1.0 + i, 0.6 + 0.9 * i, 0.8 + 0.95 * i]) for i in range(n)]
    risk = [np.array([0.0, 0.6, 0.6]) for _ in range(n)]
    problem = KnapsackProblem([f"l{i}" for i in range(n)], [["e", "x", "y"]] * n, cost, risk, [0] * n)
    world = FakeWorld(problem)
    res = genetic_search(None, None, problem, world.evaluate, 1.0, pop_size=16, generations=4, seed=1,
                         apply_fn=world.apply)
    ref = problem.choice_cost(problem.exact)[0]
    best = max(100 * (ref - problem.choice_cost([1 if j == i else 0 for j in range(n)])[0]) / ref
               for i in range(n))
    assert res.history[0].best_reduction_pct > 0 and res.history[0].feasible > 1
    assert res.reduction_pct == pytest.approx(best)
    assert sum(v != "e" for v in res.assignment.values()) == 1
    assert res.settings["seeding"]["single"] >= 7


def test_seed_population() -> None:
    rng = np.random.default_rng(0)
    genomes, counts = seed_population([3, 3, 3], [0, 0, 0], 12, rng)
    assert genomes.shape == (12, 3) and len({tuple(g) for g in genomes}) == 12
    assert tuple(genomes[0]) == (0, 0, 0)
    changed = (genomes != 0).sum(1)
    assert counts == {"all_exact": 1, "single": 6, "mix": 5, "random": 0}
    assert (changed[1:7] == 1).all() and (changed[7:] >= 2).all()
    small, c2 = seed_population([2, 1], [1, 0], 10, np.random.default_rng(0))  # space of 2
    assert len(small) == 2 and c2["all_exact"] == 1 and c2["single"] == 1


class ClockedWorld(FakeWorld):
    """FakeWorld on a fake clock: every evaluation takes one second."""

    def __init__(self, problem: KnapsackProblem) -> None:
        super().__init__(problem)
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def evaluate(self, model) -> np.ndarray:
        self.now += 1.0
        return super().evaluate(model)


def _ga_run(problem, world, monkeypatch, **kwargs):
    import fames.selection.genetic as genetic

    monkeypatch.setattr(genetic, "time", SimpleNamespace(perf_counter=world.clock))
    return genetic_search(None, None, problem, world.evaluate, 1.0, pop_size=8, generations=12, seed=2,
                          apply_fn=world.apply, **kwargs)


def _trace(res) -> list:
    return [(h.generation, h.evaluations, h.seconds, h.best_reduction_pct, h.feasible) for h in res.history]


def test_genetic_time_limit_stops_without_evaluating(monkeypatch) -> None:
    problem, _ = _misestimated_problem()
    world = ClockedWorld(problem)
    res = _ga_run(problem, world, monkeypatch, time_limit=6.5)
    assert res.stopped and res.history[-1].stopped and len(res.history) < 12
    assert sum(h.stopped for h in res.history) == 1
    assert world.calls == 7  # the exact baseline and 6 individuals; none is evaluated after 6.5 s
    assert res.evaluations == 7 and res.seconds == pytest.approx(7.0)
    assert 100 * world.base.mean() - res.accuracy <= 1.0 + 1e-9  # the answer is a measured, feasible one
    assert all(acc > 0 for _, acc in res.front)


def test_genetic_journal_resumes_the_same_search(tmp_path, monkeypatch) -> None:
    problem, _ = _misestimated_problem()
    whole = _ga_run(problem, ClockedWorld(problem), monkeypatch)
    journal = tmp_path / "ga.jsonl"
    first = ClockedWorld(problem)
    part = _ga_run(problem, first, monkeypatch, journal=journal, time_limit=10.5)
    assert part.stopped and first.calls == 11
    assert len(journal.read_text().splitlines()) == 1 + 11  # header + every evaluation, as it happened
    with journal.open("a") as f:  # a sitting killed in the middle of writing an evaluation
        f.write('{"choice": [1, 2')
    second = ClockedWorld(problem)
    rest = _ga_run(problem, second, monkeypatch, journal=journal)
    # the resumed search retraces the first sitting from the journal and ends where one whole run ends,
    # with the journaled seconds on its clock
    assert rest.replayed == 11 and second.calls == whole.evaluations - 11
    assert (rest.assignment, rest.reduction_pct, rest.front) == (whole.assignment, whole.reduction_pct, whole.front)
    assert _trace(rest) == _trace(whole) and rest.seconds == pytest.approx(whole.seconds)
    # a journal of another search is refused with a message, not silently mixed in
    import fames.selection.genetic as genetic

    with pytest.raises(ValueError, match="budget_pts"):
        genetic.genetic_search(None, None, problem, first.evaluate, 0.5, pop_size=8, generations=12, seed=2,
                               apply_fn=first.apply, journal=journal)


def _patience_stop(journal_rows: list[dict], budget_pts: float, patience: int) -> int | None:
    """Evaluations (the baseline included) after which a search evaluating `journal_rows` in order stops
    with `patience`: the first count that many past the last cheaper feasible one (None: never)."""
    base_err = journal_rows[0]["error"]
    best, last = 1.0, 1
    for n, row in enumerate(journal_rows[1:], start=2):
        if n - 1 - last >= patience:
            return n - 1
        if 100.0 * (row["error"] - base_err) <= budget_pts + 1e-9 and row["energy"] < best:
            best, last = row["energy"], n
    return None


def test_genetic_patience_stops_where_the_best_stopped_improving(tmp_path, monkeypatch) -> None:
    import json

    problem, _ = _misestimated_problem()
    journal = tmp_path / "ga.jsonl"
    whole = _ga_run(problem, ClockedWorld(problem), monkeypatch, journal=journal)
    rows = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert not whole.stopped and len(rows) == whole.evaluations
    stops = {k: _patience_stop(rows, 1.0, k) for k in range(1, 8)}
    early = [(k, n) for k, n in stops.items() if n is not None and n < len(rows)]
    patience, evaluations = max(early, key=lambda kn: kn[1])  # the latest early stop (here 7 -> 24 of 46)
    world = ClockedWorld(problem)
    res = _ga_run(problem, world, monkeypatch, patience=patience)
    assert res.stopped and res.evaluations == evaluations == world.calls
    assert res.settings["patience"] == patience and res.history[-1].stopped
    # the answer is the cheapest feasible individual of the evaluations made
    base_err = rows[0]["error"]
    best = min(r["energy"] for r in rows[:evaluations] if 100.0 * (r["error"] - base_err) <= 1.0 + 1e-9)
    assert res.reduction_pct == pytest.approx(100.0 * (1.0 - best))
    # replaying the whole journal with the same patience stops at the same place, evaluating nothing
    replay = ClockedWorld(problem)
    again = _ga_run(problem, replay, monkeypatch, journal=journal, patience=patience)
    assert replay.calls == 0 and again.evaluations == evaluations and again.assignment == res.assignment
    with pytest.raises(ValueError, match="patience"):
        _ga_run(problem, ClockedWorld(problem), monkeypatch, patience=0)


def test_loss_attribution_rescales_the_culprit_layer_on_a_copy(caplog) -> None:
    estimated, true = _misestimated_problem()
    before = [r.copy() for r in estimated.risk]
    world = LossWorld(true)
    with caplog.at_level("INFO", logger="fames.selection.budget"):
        res = search_budget(None, None, estimated, world, 1.0, apply_fn=world.apply, max_evaluations=20,
                            screen=500, confidence=0.8)
    assert res.chosen is not None and res.assignment["b"] != "x"
    assert "scaled b's estimates" in caplog.text and "banned b=x" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(before, estimated.risk, strict=True))  # caller's problem intact
    # accuracy attribution reaches the same best assignment (the culprit is clear either way)
    acc = search_budget(None, None, estimated, world, 1.0, apply_fn=world.apply, max_evaluations=20, screen=500,
                        confidence=0.8, attribution="accuracy")
    assert acc.chosen is not None and acc.chosen.energy_pj == pytest.approx(res.chosen.energy_pj)
    with pytest.raises(ValueError, match="attribution"):
        search_budget(None, None, estimated, world, 1.0, apply_fn=world.apply, attribution="gradient")
    with pytest.raises(ValueError, match="bisection"):
        search_budget(None, None, estimated, world, 1.0, apply_fn=world.apply, bisection="golden")


def _fine_problem() -> KnapsackProblem:
    """One layer, 31 options 0.1 % of energy apart, each step costing 0.05 points: a dense sweep front."""
    steps = np.arange(31)
    return KnapsackProblem(["a"], [[f"o{k}" for k in steps]], [1.0 - 0.001 * steps], [0.05 * steps], [0])


def test_search_skips_candidates_saving_too_little_more() -> None:
    problem = _fine_problem()
    world = FakeWorld(problem)
    res = search_budget(None, None, problem, world.evaluate, 1.0, apply_fn=world.apply, n_taus=40,
                        learn_cuts=False, confidence=0.8)
    accepted = sorted(p.reduction_pct for p in res.points if p.accepted)
    assert len(accepted) >= 2
    assert all(b - a >= MIN_GAIN_PCT - 1e-9 for a, b in zip(accepted, accepted[1:], strict=False))
    # exhaustive: the best sweep point the rule accepts is at most MIN_GAIN_PCT better than the choice
    best = max(p.reduction_pct for p in res.points
               if paired_drop(world.base, _eval(world, p.assignment), 1.0, 0.8).upper_pts <= 1.0)
    assert res.chosen is not None and res.chosen.reduction_pct >= best - MIN_GAIN_PCT


def test_blame_trials_rescale_every_underestimated_layer(caplog) -> None:
    # a and b (really 6 and 3 points) both look cheap; a sparse tau grid puts them in one rejected step
    names, cost = [["e", "x"]] * 3, [np.array([1.0, 0.5]), np.array([1.0, 0.6]), np.array([1.0, 0.9])]
    true = KnapsackProblem(list("abc"), names, cost, [np.array([0.0, 6.0]), np.array([0.0, 3.0]),
                                                      np.array([0.0, 0.1])], [0] * 3)
    estimated = KnapsackProblem(list("abc"), names, cost, [np.array([0.0, 0.05]), np.array([0.0, 0.02]),
                                                           np.array([0.0, 0.01])], [0] * 3)
    world = LossWorld(true)
    with caplog.at_level("INFO", logger="fames.selection.budget"):
        res = search_budget(None, None, estimated, world, 1.0, apply_fn=world.apply, n_taus=3,
                            max_evaluations=20, screen=500, confidence=0.8)
    assert res.chosen is not None and res.assignment["a"] == "e" and res.assignment["b"] == "e"
    text = caplog.text
    # the blame trials measured b too: its layer is scaled with the first ban, before any ban of its own
    assert "banned a=x" in text and "scaled b's estimates" in text
    assert text.index("scaled b's estimates") < text.index("banned a=x")


class CountingWorld(LossWorld):
    """LossWorld that counts the validation images evaluated for approximate assignments (`results` goes
    through ``__call__``)."""

    images = 0

    def __call__(self, model, part: slice | None = None) -> np.ndarray:
        out = super().__call__(model, part)
        if self.current:
            self.images += len(out)
        return out


def _random_problems(n: int, seed: int = 1) -> list[tuple[KnapsackProblem, KnapsackProblem]]:
    """(estimated, true) pairs: 5 layers x 4 options, estimates off by a factor 0.2-1.5 per option."""
    rng, out = np.random.default_rng(seed), []
    for _ in range(n):
        cost = [np.sort(rng.random(4))[::-1] + 0.1 for _ in range(5)]
        risk = [np.concatenate([[0.0], np.sort(rng.random(3) * 1.5)]) for _ in range(5)]
        est = [r * rng.uniform(0.2, 1.5, 4) for r in risk]
        names = [[f"o{k}" for k in range(4)]] * 5
        out.append((KnapsackProblem(list("abcde"), names, cost, est, [0] * 5),
                    KnapsackProblem(list("abcde"), names, cost, risk, [0] * 5)))
    return out


@pytest.mark.parametrize("max_evaluations", [1, 2, 3, 4])
def test_budget_is_a_true_bound_on_the_passes(max_evaluations: int) -> None:
    """Nothing is started that the budget cannot finish (the previous search ended at 2.25 passes of 2)."""
    for estimated, true in [_misestimated_problem(), *_random_problems(8)]:
        world = CountingWorld(true)
        res = search_budget(None, None, estimated, world, 1.0, apply_fn=world.apply,
                            max_evaluations=max_evaluations, screen=500, confidence=0.8)
        assert world.images / N_VAL == pytest.approx(res.passes)
        assert res.passes <= max_evaluations + 1e-9
        assert res.evaluations >= 2  # the exact baseline and at least one candidate


def test_no_candidate_is_estimated_riskier_than_a_measured_failure(monkeypatch, caplog) -> None:
    """Every candidate is measured only while its estimate (as rescaled at that moment) is below that of every
    rejection measured before it, rejections making a substitution still underestimated after rescaling
    aside."""
    snapshots: list[list[np.ndarray]] = []
    real_solve = budget.solve_knapsack

    def recording_solve(problem, tau, cuts=()):
        snapshots.append([r.copy() for r in problem.risk])
        return real_solve(problem, tau, cuts=cuts)

    monkeypatch.setattr(budget, "solve_knapsack", recording_solve)
    stops = 0
    for estimated, true in [_misestimated_problem(), *_random_problems(12, seed=3)]:
        world = LossWorld(true)
        applied: list[tuple[dict, int]] = []

        def apply(model, assignment, library, world=world, applied=applied):
            applied.append((dict(assignment), len(snapshots)))
            world.apply(model, assignment, library)

        snapshots.clear()
        caplog.clear()
        with caplog.at_level("INFO", logger="fames.selection.budget"):
            res = search_budget(None, None, estimated, world, 1.0, apply_fn=apply, max_evaluations=12,
                                screen=500, confidence=0.8)
        stops += "no retry" in caplog.text
        short = {tuple(m.split(" stays")[0].split("=")) for m in caplog.messages if m.endswith("stays underestimated")}

        def when(p, applied=applied):  # (apply index, snapshots made by then) of p's own evaluation
            return max((k, n) for k, (a, n) in enumerate(applied) if a == p.assignment)

        def estimate(p, risks, estimated=estimated):
            return sum(risks[i][estimated.options[i].index(p.assignment[k])] for i, k in enumerate(estimated.layers))

        measured = [p for p in res.points if p.measured is not None]
        for p in measured:
            k, n = when(p)
            risks = snapshots[n - 1]
            earlier = [q for q in measured if q.accepted is False and when(q)[0] < k
                       and not any((layer, q.assignment[layer]) in short for layer in estimated.layers)]
            assert all(estimate(p, risks) < estimate(q, risks) for q in earlier)
    assert stops >= 1  # the rule was exercised


@pytest.mark.parametrize("batch_size", [None, 250, 500, 800])
def test_hopeless_candidates_are_screened_out_on_the_first_batch(batch_size) -> None:
    estimated, true = _misestimated_problem()
    world = CountingWorld(true)
    if batch_size:
        world.batch_size = batch_size
    res = search_budget(None, None, estimated, world, 1.0, apply_fn=world.apply, max_evaluations=20,
                        screen=500, confidence=0.8)
    screened = [p for p in res.points if p.measured is not None and p.measured.n < N_VAL]
    first = batch_size if batch_size in (250, 500) else 500  # a first look only at less than the prefix
    assert screened and all(p.measured.n == first and not p.accepted for p in screened)
    assert world.images / N_VAL == pytest.approx(res.passes)
    assert res.chosen is not None and res.assignment["b"] != "x"
