"""ILP vs brute-force enumeration on small random multiple-choice knapsacks."""

from __future__ import annotations

import itertools
import logging
import os

import numpy as np
import pytest

from fames.multipliers import AppMul, HardwareFigures, OperandFormat
from fames.multipliers.library import Library
from fames.selection.ilp import KnapsackProblem, build_problem, solve_knapsack


def _random_problem(rng: np.random.Generator, n_layers: int) -> KnapsackProblem:
    options, cost, risk, exact = [], [], [], []
    for _ in range(n_layers):
        k = int(rng.integers(1, 5))
        c = rng.uniform(0.1, 1.0, size=k)
        r = rng.normal(0.5, 1.0, size=k)  # negative estimates included
        e = int(rng.integers(0, k))
        c[e], r[e] = 1.5, 0.0  # exact: most expensive, no risk
        options.append([f"m{i}" for i in range(k)])
        cost.append(c)
        risk.append(r)
        exact.append(e)
    return KnapsackProblem([f"l{i}" for i in range(n_layers)], options, cost, risk, exact)


def _brute(problem: KnapsackProblem, tau: float) -> float | None:
    best = None
    for choice in itertools.product(*[range(len(o)) for o in problem.options]):
        cost, risk = problem.choice_cost(choice)
        if risk <= tau + 1e-9 and (best is None or cost < best):
            best = cost
    return best


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    problem = _random_problem(rng, int(rng.integers(1, 5)))
    lo, hi = problem.tau_range()
    for tau in np.linspace(lo - 0.5, hi + 0.5, 7):
        sol = solve_knapsack(problem, float(tau))
        want = _brute(problem, float(tau))
        if want is None:
            assert not sol.optimal and "infeasible" in sol.message
            assert sol.choice == problem.exact
        else:
            assert sol.optimal
            assert sol.cost == pytest.approx(want, rel=1e-7, abs=1e-9)
            assert sol.risk <= tau + 1e-6


def test_build_problem_from_library() -> None:
    fmt = OperandFormat.parse("u2xs2")
    hw = lambda e: HardwareFigures(1.0, 1.0, 1.0, e, 10.0)  # noqa: E731
    lib = Library([AppMul.exact(fmt, hardware=hw(1.0)),
                   AppMul("a", fmt, fmt.exact_table() + 1, hardware=hw(0.5))])
    problem = build_problem({"x": 10}, {"x": {"u2xs2_exact": 0.3, "a": 0.2}}, lib)
    assert problem.risk[0].tolist() == [0.0, 0.2] and problem.cost[0].tolist() == [10.0, 5.0]
    assert solve_knapsack(problem, 0.25).assignment == {"x": "a"}
    assert solve_knapsack(problem, 0.1).assignment == {"x": "u2xs2_exact"}
    with pytest.raises(ValueError, match="MAC"):
        build_problem({}, {"x": {"a": 0.1}}, lib)
    with pytest.raises(ValueError, match="exact"):
        build_problem({"x": 1}, {"x": {"a": 0.1}}, lib)
    with pytest.raises(ValueError, match="finite"):
        solve_knapsack(problem, float("nan"))


def _clip_library():
    fmt = OperandFormat.parse("u2xs2")
    hw = lambda e: HardwareFigures(1.0, 1.0, 1.0, e, 10.0)  # noqa: E731
    base = fmt.exact_table()
    return Library([AppMul.exact(fmt, hardware=hw(1.0))]
                   + [AppMul(f"a{i}", fmt, base + i + 1, hardware=hw(1.0 - 0.2 * (i + 1))) for i in range(3)])


def test_build_problem_clips_negative_risk() -> None:
    lib = _clip_library()
    table = {"x": {"u2xs2_exact": -0.4, "a0": -0.5, "a1": 0.3, "a2": -1e-9},
             "y": {"u2xs2_exact": 0.0, "a0": 0.6, "a1": 0.5, "a2": 0.9}}
    problem = build_problem({"x": 10, "y": 20}, table, lib)
    assert problem.risk[0].tolist() == [0.0, 0.0, 0.3, 0.0]  # exact stays 0, negatives become 0
    assert problem.risk[1].tolist() == [0.0, 0.6, 0.5, 0.9]
    assert all((r >= 0).all() for r in problem.risk)
    sol = solve_knapsack(problem, 0.4)
    assert sol.assignment == {"x": "a2", "y": "u2xs2_exact"} and sol.risk == 0.0
    # unclipped, x's -0.5 would have paid for y's riskiest candidate (0.9) within tau = 0.4
    raw = [np.array([table[k][n] if n != "u2xs2_exact" else 0.0 for n in problem.options[i]])
           for i, k in enumerate(problem.layers)]
    unclipped = KnapsackProblem(problem.layers, problem.options, problem.cost, raw, problem.exact)
    assert solve_knapsack(unclipped, 0.4).assignment == {"x": "a0", "y": "a2"}
    assert solve_knapsack(problem, 0.0).risk == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_clipped_problem_matches_brute_force(seed: int) -> None:
    """Random tables with negative estimates: the ILP on the clipped risks equals the brute force on them."""
    rng = np.random.default_rng(100 + seed)
    lib = _clip_library()
    names = ["u2xs2_exact", "a0", "a1", "a2"]
    layers = [f"l{i}" for i in range(int(rng.integers(1, 5)))]
    table = {}
    for layer in layers:
        picked = ["u2xs2_exact"] + [n for n in names[1:] if rng.random() < 0.7]
        table[layer] = {n: float(rng.normal(0.2, 1.0)) for n in picked}
    macs = {layer: int(rng.integers(1, 100)) for layer in layers}
    problem = build_problem(macs, table, lib)
    for i, layer in enumerate(layers):
        want = [0.0 if n == "u2xs2_exact" else max(table[layer][n], 0.0) for n in problem.options[i]]
        assert problem.risk[i].tolist() == want
    lo, hi = problem.tau_range()
    assert lo == 0.0
    for tau in np.linspace(-0.2, hi + 0.2, 7):
        sol = solve_knapsack(problem, float(tau))
        want = _brute(problem, float(tau))
        if want is None:
            assert tau < 0 and not sol.optimal and sol.choice == problem.exact
        else:
            assert sol.optimal and sol.cost == pytest.approx(want, rel=1e-7, abs=1e-9)
            assert 0.0 <= sol.risk <= tau + 1e-6


def test_solver_output_goes_to_the_log(capfd, caplog) -> None:
    """C-level prints during the solve (some HiGHS builds printf debug lines) reach neither stdout nor
    stderr but the DEBUG log; the descriptors work as before afterwards."""
    from fames.selection import ilp

    with caplog.at_level(logging.DEBUG, logger="fames.selection.ilp"), ilp._solver_output_to_log():
        os.write(1, b"native print\n")
        os.write(2, b"native error\n")
    print("after", flush=True)
    os.write(2, b"later\n")
    out, err = capfd.readouterr()
    assert "native" not in out + err and "after" in out and "later" in err
    assert "HiGHS: native print" in caplog.text and "HiGHS: native error" in caplog.text
