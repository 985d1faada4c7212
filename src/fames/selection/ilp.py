"""Multiple-choice knapsack ILP (DESIGN.md section 4), solved by HiGHS through `scipy.optimize.milp`.

    minimise    sum_{l,m} cost[l][m] x_{l,m}        (cost = MAC_l * e_m)
    subject to  sum_m x_{l,m} = 1                   for every layer l
                sum_{l,m} risk[l][m] x_{l,m} <= tau (risk = estimated loss change dL(l, m))
                x_{l,m} in {0, 1}
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

log = logging.getLogger(__name__)


@dataclass
class KnapsackProblem:
    """Candidates of every layer.

    Attributes:
        layers: layer names.
        options: per layer, candidate multiplier names.
        cost: per layer, energy of each candidate (same order as `options`).
        risk: per layer, estimated loss change of each candidate.
        exact: per layer, index of the exact multiplier (the fallback choice).
    """

    layers: list[str]
    options: list[list[str]]
    cost: list[np.ndarray]
    risk: list[np.ndarray]
    exact: list[int]

    def __post_init__(self) -> None:
        n = len(self.layers)
        if not (len(self.options) == len(self.cost) == len(self.risk) == len(self.exact) == n):
            raise ValueError("layers, options, cost, risk and exact must have one entry per layer")
        self.cost = [np.asarray(c, dtype=np.float64) for c in self.cost]
        self.risk = [np.asarray(r, dtype=np.float64) for r in self.risk]
        for i, name in enumerate(self.layers):
            k = len(self.options[i])
            if k == 0 or self.cost[i].shape != (k,) or self.risk[i].shape != (k,):
                raise ValueError(f"layer {name!r}: need at least one option and one cost/risk per option")
            if not 0 <= self.exact[i] < k:
                raise ValueError(f"layer {name!r}: exact index {self.exact[i]} outside 0..{k - 1}")
            if not (np.all(np.isfinite(self.cost[i])) and np.all(np.isfinite(self.risk[i]))):
                raise ValueError(f"layer {name!r}: cost and risk must be finite")

    def copy(self) -> KnapsackProblem:
        """A copy whose estimates can be changed without touching this one (names and costs are shared)."""
        return KnapsackProblem(self.layers, self.options, self.cost, [r.copy() for r in self.risk], self.exact)

    def scale_layer(self, layer: int, factor: float) -> None:
        """Multiply the positive estimates of layer index `layer` by `factor` (zero and negative ones stay)."""
        self.risk[layer] = np.where(self.risk[layer] > 0, self.risk[layer] * factor, self.risk[layer])

    def choice_cost(self, choice: Sequence[int]) -> tuple[float, float]:
        """``(total cost, total risk)`` of per-layer option indices."""
        return (float(sum(self.cost[i][c] for i, c in enumerate(choice))),
                float(sum(self.risk[i][c] for i, c in enumerate(choice))))

    def assignment(self, choice: Sequence[int]) -> dict[str, str]:
        """``{layer: multiplier name}`` of per-layer option indices."""
        pairs = enumerate(zip(self.layers, choice, strict=True))
        return {layer: self.options[i][c] for i, (layer, c) in pairs}

    def tau_range(self) -> tuple[float, float]:
        """``(min, max)`` total risk over all assignments (max = sum of per-layer maximum risks)."""
        return (float(sum(r.min() for r in self.risk)), float(sum(r.max() for r in self.risk)))


@dataclass
class IlpSolution:
    """Solution of one ILP.

    Attributes:
        choice: per layer, index of the chosen option.
        assignment: ``{layer: multiplier name}``.
        cost: total cost (energy).
        risk: total estimated loss change.
        tau: the bound it was solved for.
        optimal: True when HiGHS proved optimality; False for the exact fallback.
        message: solver status, or why the exact assignment was returned.
        seconds: solve time.
    """

    choice: list[int]
    assignment: dict[str, str]
    cost: float
    risk: float
    tau: float
    optimal: bool
    message: str
    seconds: float = field(default=0.0)


def solve_knapsack(problem: KnapsackProblem, tau: float, time_limit: float = 60.0,
                   cuts: Sequence[Sequence[tuple[int, int]]] = ()) -> IlpSolution:
    """Cheapest assignment whose estimated loss change is at most `tau`.

    Args:
        problem: the candidates.
        tau: bound on the summed risk.
        time_limit: HiGHS time limit in seconds.
        cuts: "no-good" cuts: each a list of ``(layer index, option index)`` pairs that must not all be
            chosen together (``sum x <= len - 1``), e.g. substitutions measured to fail jointly.

    Returns:
        The optimal `IlpSolution`; when the ILP is infeasible (``tau`` below the smallest reachable risk)
        or the solver fails, the all-exact assignment with ``optimal=False`` and the reason in `message`.

    Raises:
        ValueError: non-finite `tau`.
    """
    if not np.isfinite(tau):
        raise ValueError(f"tau must be finite, got {tau!r}")
    start = time.perf_counter()
    sizes = [len(o) for o in problem.options]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n_var = int(offsets[-1])
    c = np.concatenate(problem.cost)
    c = c / max(float(np.abs(c).max()), 1e-300)  # scaling keeps HiGHS' tolerances meaningful
    rows = np.repeat(np.arange(len(sizes)), sizes)
    a_eq = coo_matrix((np.ones(n_var), (rows, np.arange(n_var))), shape=(len(sizes), n_var))
    risk = np.concatenate(problem.risk)[None, :]
    r_scale = max(float(np.abs(risk).max()), abs(float(tau)), 1e-300)
    constraints = [LinearConstraint(a_eq, 1, 1), LinearConstraint(risk / r_scale, -np.inf, tau / r_scale)]
    cuts = [cut for cut in cuts if cut]
    if cuts:
        cut_rows = np.concatenate([[k] * len(cut) for k, cut in enumerate(cuts)])
        cut_cols = np.array([offsets[layer] + option for cut in cuts for layer, option in cut])
        a_cut = coo_matrix((np.ones(cut_cols.size), (cut_rows, cut_cols)), shape=(len(cuts), n_var))
        constraints.append(LinearConstraint(a_cut, -np.inf, np.array([len(cut) - 1 for cut in cuts])))
    with _solver_output_to_log():
        res = milp(c, constraints=constraints, integrality=np.ones(n_var), bounds=Bounds(0, 1),
                   options={"time_limit": time_limit})
    seconds = time.perf_counter() - start
    if res.status != 0 or res.x is None:
        lo = problem.tau_range()[0]
        why = (f"infeasible: tau={tau:.4g} is below the smallest reachable estimated loss change {lo:.4g}"
               if res.status == 2 or tau < lo else f"solver status {res.status}: {res.message}")
        log.info("ILP returned the exact assignment (%s)", why)
        return _exact_solution(problem, tau, f"{why}; returning the exact assignment", seconds)
    x = res.x
    choice = [int(np.argmax(x[offsets[i] : offsets[i + 1]])) for i in range(len(sizes))]
    cost, total_risk = problem.choice_cost(choice)
    return IlpSolution(choice, problem.assignment(choice), cost, total_risk, tau, True, res.message, seconds)


@contextmanager
def _solver_output_to_log() -> Iterator[None]:
    """Send file descriptors 1 and 2 to a temporary file meanwhile and log what was written at DEBUG level:
    some HiGHS builds ``printf`` debug lines (e.g. ``HighsMipSolverData::transformNewIntegerFeasibleSolution
    tmpSolver.run();``, three per ResNet selection) that would corrupt ``--json`` output on stdout and
    clutter every user's terminal on stderr."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
    except (OSError, ValueError):  # no real descriptors (embedded interpreters): nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.debug("HiGHS: %s", line)


def _exact_solution(problem: KnapsackProblem, tau: float, message: str, seconds: float) -> IlpSolution:
    cost, risk = problem.choice_cost(problem.exact)
    return IlpSolution(list(problem.exact), problem.assignment(problem.exact), cost, risk, tau, False,
                       message, seconds)


def build_problem(
    macs: Mapping[str, int],
    table: Mapping[str, Mapping[str, float]],
    library,
) -> KnapsackProblem:
    """Knapsack candidates from MAC counts, a sensitivity table and a library.

    Args:
        macs: ``{layer: MACs per sample}``.
        table: ``{layer: {mul name: estimated loss change}}`` (`sensitivity_table`); its layers are the
            decision variables, its multipliers the candidates. Exact multipliers get risk 0; negative
            estimates are clipped to 0.
        library: a `Library` (``get(name)``).

    Returns:
        A `KnapsackProblem` with ``cost = MAC_l * energy_pj``.

    Raises:
        ValueError: a layer without MAC count or without an exact candidate.
    """
    layers, options, cost, risk, exact = [], [], [], [], []
    for layer, cands in table.items():
        if layer not in macs:
            raise ValueError(f"layer {layer!r} has no MAC count")
        names = list(cands)
        muls = [library.get(n) for n in names]
        exact_idx = [i for i, m in enumerate(muls) if m.is_exact]
        if not exact_idx:
            raise ValueError(f"layer {layer!r}: the library holds no exact multiplier among its candidates")
        layers.append(layer)
        options.append(names)
        cost.append(np.array([macs[layer] * m.energy_pj for m in muls]))
        # Clip every candidate's risk at 0. A negative Taylor estimate (e.g. fisher on a model that has not
        # converged, where the first-order term does not cancel) lies within its own error of zero, and an
        # approximate multiplier cannot be trusted to improve the loss. Left negative, it would "pay" for
        # riskier choices in other layers, letting the ILP pick harmful multipliers for free.
        risk.append(np.array([0.0 if m.is_exact else max(float(cands[n]), 0.0)
                              for n, m in zip(names, muls, strict=True)]))
        exact.append(exact_idx[0])
    return KnapsackProblem(layers, options, cost, risk, exact)
