"""From an accuracy budget (points of top-1) to the ILP bound tau, with few measured evaluations.

1. Sweep tau over a grid (0 plus a geometric grid up to the largest reachable estimated loss change)
   and solve the ILP at each: cheap, and it gives the (energy, estimated dL) Pareto front.
2. The distinct assignments of the sweep, ordered by tau, have non-increasing energy. Bisect over them
   with full emulated evaluations on the validation split, assuming the measured drop grows with tau.
   When the bracket (last accepted A, first rejected B) holds no unevaluated point, *learn from the
   rejection* while evaluations remain: each substitution B makes beyond A is tried alone on top of A
   (on the screening prefix), the one that raises the mean per-sample loss the most is banned (a cut in
   the ILP), its layer's estimates, and those of every other substitution tried whose estimate rose, are
   scaled up by the measured / estimated loss change (1 to `MAX_RISK_SCALE`), and the ILP is solved
   again at B's tau (halfway between A's and B's when B itself was such a retry, then at B's and larger
   taus, while the solution's estimate stays below that of every rejection so far: see *No retry riskier
   than a measured failure*). The new solution must save `MIN_GAIN_PCT` points
   more than A (else the search stops: smaller steps cost a full evaluation for nothing a user would
   notice); it is evaluated and becomes the new A or the new B. A fixed grid leaves big gaps exactly where it
   matters (VGG: 20.6 % accepted at 0.2 pt, the next point 25.3 % at 3.1 pt, because one
   substitution's risk was underestimated); banning it finds the assignments in between. A cut on the
   whole difference A -> B was tried first: the ILP then merely swapped a negligible layer's choice.
   *Loss, not accuracy, picks the culprit*: counting wrong answers on 1,000 images cannot tell apart
   substitutions that each cost a few images (LeNet at seed 0: eight bans in a row of fc2 and fc3
   multipliers that saved 0.01 pt each, every retry measuring the same 1.16 pt drop, because the
   real culprit, conv1's, was never named); the per-sample losses of the same images name it at once.
   *Rescaling* stops the ILP from proposing the culprit's siblings one by one: the estimate that let it
   in was too low for the whole layer (estimate / measured of one estimator ranges 0.10-1.36 across
   ResNet's layers).
   *Only candidates worth a pass*: the bisection skips the bracket's points that save less than
   `MIN_GAIN_PCT` more than A (LeNet's front holds runs of assignments 0.04-0.1 pt apart, and each cost a
   full evaluation). Measured over calibration seeds 0-4 at 8 passes, these two changes took LeNet from
   31.7 % to 34.1 % on average and VGG from 38.4 % to 39.1 %, and ResNet from 30.3 % to 29.7 % (more of
   its 22 layers get scaled at once, so its retries are more cautious).
   *Nothing the budget cannot finish*: a candidate is started only when its whole evaluation fits in the
   budget, and blame trials only when a whole candidate evaluation still fits after them, so the budget is
   a true bound and no pass is spent on work whose result cannot be used (VGG at seed 0 spent its last 0.6
   passes on blame trials and a screened retry it could not have accepted). Over calibration seeds 0-4 of
   the three reference models it changed one choice of fifteen: ResNet's seed 0 kept 27.16 % where the
   search found 28.92 % in its ninth pass of eight (the balanced bisection below finds it in eight).
   *No retry riskier than a measured failure*: a retry whose solution is estimated (under the estimates as
   rescaled so far) at least as risky as an assignment already measured to fail ends the search; a larger
   tau would only find riskier ones. Rejections making a substitution whose measured loss change the
   rescaled estimates still fall short of (not measured alone, more than `MAX_RISK_SCALE` times its
   estimate, or any blamed one when ``rescale_layers`` is off) are left out: their estimates do not say
   what they cost. Before, the search climbed to
   larger taus after an acceptance and mostly paid for failures: VGG at seed 0 spent its last 2.6 of 7.6
   passes on a 67.88 % candidate estimated at 4x the lowest measured failure (screened out), blame trials
   that rescaled seven layers, and a 42.18 % candidate measured at a 1.50 pt drop. Over calibration seeds
   0-4 of the three reference models at 8 passes the rule ended three searches early (VGG seeds 0-2) and
   changed one choice of fifteen: VGG's seed 1 keeps 42.31 % where the old search found 42.57 % in its
   last pass (estimated at 0.0239, above the 0.0236 of a 42.87 % candidate measured at a 0.90 pt drop).
   *Where to bisect* (``bisection``, default ``"balanced"``): the tau grid is geometric, so the index
   median spends passes at small reductions: ResNet at seed 0 rejected 31.59 % and then climbed
   6.05 -> 17.34 -> 23.39 -> 27.16 %, one pass each, with no pass left for the retry that finds 28.92 %.
   The balanced step takes the index median unless its reduction lies in the bottom quarter of the
   bracket's reductions, and then the point nearest the middle of the bracket's reductions among those
   that still close the bracket in ``ceil(log2(m + 1))`` measurements (so plain bisection's bound holds).
   On the 15 reference runs (three models x calibration seeds 0-4, 8 passes) it chose what the index
   median chose on LeNet and VGG, with the same passes, and on ResNet took seed 0 from 27.16 % to 28.92 %
   and seeds 1 and 3 to the same choices with one pass less. Two bolder aims, kept as options, moved more
   and lost elsewhere: ``"reduction"`` (the reduction midpoint once any bracket end is measured) gave
   ResNet seed 0 28.92 % but LeNet seed 0 30.54 % instead of 36.45 % (one more pass, spent at 14.63 %) and
   VGG 0.1-0.9 more passes for the same choices; ``"aimed"`` (where the ends' measured upper bounds,
   interpolated in the estimated loss change, reach the budget; `benchmarks/results/search_cost_aimed/`)
   gave ResNet seed 0 29.75 % and VGG and ResNet 0-1 fewer passes, but cost LeNet seeds 0 and 1 their
   36.45 / 36.37 % (30.54 / 30.89 %): accepting 30.01 % instead of 29.92 % changes which layers the blame
   trials rescale, and the 36.5 % retries then found fail at upper bounds 1.12 and 1.04, where the index
   path's pass at 0.96. LeNet's 36 % candidates sit at the edge of the budget (two 36.45 % assignments
   measured at upper bounds 0.96 and 1.24); requiring retries to save 0.5, 0.75 or 1 point instead of
   `MIN_GAIN_PCT` moved LeNet seed 0 to 29.9-30.5 %. On `benchmarks/budget_rule.py`'s synthetic worlds
   (80 per row, 8 and 16 passes, `benchmarks/results/budget_rule_bisection/`) the four modes are within
   0.3 pt of each other in mean saving, balanced within 0.06 pt of the index median with the same
   overshoot: its fronts are not crowded at small reductions as the reference models' are.
   *Screening*: a candidate is first evaluated on a prefix of the validation split; if even the lower
   95 % bound of its drop there exceeds the budget it is rejected without the rest (clear failures
   cost a fraction of an evaluation). The prefix starts with a *first look* at one evaluation batch (the
   evaluator's ``batch_size``, when smaller than the prefix), judged by the same bound: the hopeless
   candidates of a bisection's first steps (VGG: drops of 4-88 pt) stop there, at about half the cost.
   Needs an evaluator that takes ``part`` (`make_evaluator`).
3. Decision rule (documented margin): a candidate is accepted when the upper `confidence` bound
   (one-sided) of its **paired** accuracy drop against the exact model on the same images is at most the
   budget. The default level grows with the evaluation budget (`default_confidence`): the search keeps
   the best of the candidates it accepted, so each extra measured candidate is one more chance to accept
   one whose validation drop was lucky (the winner's curse). Holding ``(1 - confidence) * passes`` at
   1.6 (80 % at 8 passes, 90 % at 16) keeps the expected number of such chances fixed, a Bonferroni-style
   correction. Measured: 16 passes at 80 % chose a VGG assignment with a 0.74 pt validation drop and a
   1.16 pt test drop; at 90 % one with 0.56 / 0.61 (`benchmarks/results/paper_table.md`). On synthetic
   worlds with known truth (`benchmarks/budget_rule.py`) the rule keeps the share of over-budget choices
   at or below the 8-pass level, where a fixed 80 % lets it grow from 11-13 % to 19-35 %.
   The bound comes from a paired bootstrap of the per-image differences ``d_i = correct_exact_i - correct_approx_i``
   (McNemar's setting: only discordant images matter). ``prob_within_budget`` (bootstrap share of drops
   <= budget) says how sure the answer is.

Tried and not adopted (measured with `benchmarks/budget_rule.py`'s synthetic worlds, 80 per row, against
this search at the same passes and the default level):

- *Sequential evaluation*: every candidate judged chunk by chunk (1,000 images; successive candidates
  starting at successive chunks), accepted for now once the upper bound at level ``1 - (1 - c) / 4`` on
  the images so far is within the budget, an acceptance finished on the whole split before the search
  learns from a rejection above it and before it is returned. Mean reduction +0.1 to +0.7 pt at 8, 12
  and 16 passes, but the share of over-budget choices also grew by up to 2.5 points (rho 0.5, 16 passes:
  24.4 % / 8.8 % against 23.9 % / 6.3 %). On the reference models at 16 passes it chose the same VGG and
  ResNet assignments: their candidates are mostly close to the budget, and such candidates need the
  whole split either way. An early rejection below the budget (the budget less the bound's margin) cost
  LeNet its 31.91 % choice: one chunk showed a 1.8 pt drop where the whole split shows 0.68.
- *Aimed bisection*: the next candidate where the bracket's measured drops, interpolated linearly in the
  estimated loss change, reach the acceptable drop, alternating with halving steps. Within noise of
  plain bisection (16 passes: 24.6 % vs 23.9 % at rho 0.5, 27.0 % vs 27.6 % at rho 0.9). On the reference
  models the same aim within bisection's bound moved choices both ways (*Where to bisect* above).

Cheaper or better-placed evaluations bought little: what limits the search here seems to be the
candidates the ILP proposes and the level of the rule. Two changes to the proposals, measured on the
reference models (the then-default settings with `mean|t|`, same evaluations cached by assignment), did not
help either:

- *Penalties instead of bans*: multiplying the culprit's estimated risk by 2 or by 4 instead of cutting
  it out chose the same VGG assignment (36.88 %) with the same 16.2 passes: at the taus the search
  retries, a doubled risk already keeps the culprit out, so the penalty acts as the ban does.
- *A joint absolute estimate*: ``mean_g sqrt(m_g) |sum_l T_{g,l}(c_l)| / N <= tau`` (the group terms of
  `fames.sensitivity.estimators` summed over layers before the absolute value, so that the errors of
  different layers may cancel as they can in the network; an exact MILP with one epigraph variable per
  calibration group). On the assignments the default search measured it ranks the measured loss change a
  little better on VGG and LeNet (Spearman 0.86 vs 0.78, 0.93 vs 0.90; ResNet 0.94 vs 0.95), but the ILP
  then seeks out the cancellations that the 32 calibration groups show and the validation split does
  not: VGG 34.19 % (default 36.88 %), LeNet 30.54 % (31.91 %). On ResNet (22 layers, about 25
  candidates each, against 32 group terms) the ILP can make every group's sum cancel: its candidates
  saved 97-98 % with a measured drop of 82 points. Each solve also takes seconds instead of milliseconds.

What did help was the estimator the proposals rest on: sums of curvature rank whole assignments near the
budget far better than sums of `mean|t|` (`benchmarks/journal_ranking.py`), and with it the same search
chose 37.2 / 29.9 % on VGG / ResNet instead of 36.9 / 25.9 % (`fames.sensitivity.estimators`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from fames.selection.evaluate import ApplyFn, Evaluator, default_apply
from fames.selection.ilp import IlpSolution, KnapsackProblem, solve_knapsack

log = logging.getLogger(__name__)

MIN_GAIN_PCT = 0.25  # a candidate found after a ban must save this many points more than the accepted one
# Validation passes of the budget search. 8 rather than 16: with culprits named by loss, over calibration seeds
# 0-4 of the three reference models, 8 passes (at 80 %) saved as much as 16 (at 90 %), 33.5 % against 33.2 %
# on average, with the same largest test drop (0.86 pt), in half the time (`benchmarks/results/search_cost/`).
DEFAULT_MAX_EVALUATIONS = 8
WRONG_ACCEPTANCE_ALLOWANCE = 1.6  # (1 - confidence) * passes of the default level (see module doc)
MIN_CONFIDENCE = 0.8
BISECTIONS = ("index", "reduction", "aimed", "balanced")  # `search_budget`'s choice of the next bracket point
DEFAULT_BISECTION = "balanced"
CROWDED_SHARE = 0.25  # "balanced" leaves the index median when it sits in this bottom share of the reductions
MAX_RISK_SCALE = 8.0  # largest factor one ban applies to its layer's estimates (`rescale_layers`)


def default_confidence(max_evaluations: float) -> float:
    """One-sided level of the drop bound for a search of `max_evaluations` passes: ``1 - 1.6 / passes``,
    at least 80 % (80 % at 8 passes, 90 % at 16, 95 % at 32)."""
    if max_evaluations <= 0:
        raise ValueError(f"max_evaluations must be > 0, got {max_evaluations}")
    return max(MIN_CONFIDENCE, 1.0 - WRONG_ACCEPTANCE_ALLOWANCE / max_evaluations)


@dataclass
class DropBound:
    """Paired accuracy drop (percentage points) of a candidate against the exact model.

    Attributes:
        drop_pts: measured drop ``acc_exact - acc_approx``.
        upper_pts: one-sided upper `confidence` bound of the drop (paired bootstrap).
        confidence: level of `upper_pts`.
        prob_within_budget: bootstrap probability that the true drop is within the budget.
        n: images; n_worse / n_better: discordant images the approximation gets wrong / right.
    """

    drop_pts: float
    upper_pts: float
    confidence: float
    prob_within_budget: float
    n: int
    n_worse: int
    n_better: int


def paired_drop(base_correct: np.ndarray, new_correct: np.ndarray, budget_pts: float = 1.0,
                confidence: float = 0.8, n_boot: int = 4000, seed: int = 0) -> DropBound:
    """Paired-bootstrap bound on the accuracy drop over the same images.

    Args:
        base_correct: per-image correctness of the exact model (bool).
        new_correct: per-image correctness of the approximate model, same images.
        budget_pts: budget used for `prob_within_budget`.
        confidence: one-sided level of the upper bound, in (0, 1).
        n_boot: bootstrap resamples (resampling the three outcome counts is exact and cheap).
        seed: RNG seed.

    Returns:
        A `DropBound`.

    Raises:
        ValueError: different lengths, no images, or `confidence` outside (0, 1).
    """
    base, new = np.asarray(base_correct, bool), np.asarray(new_correct, bool)
    if base.shape != new.shape or base.size == 0:
        raise ValueError(
            f"need two non-empty correctness arrays of one shape, got {base.shape} and {new.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = base.size
    worse, better = int((base & ~new).sum()), int((~base & new).sum())
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [worse / n, better / n, 1.0 - (worse + better) / n], size=n_boot)
    drops = 100.0 * (counts[:, 0] - counts[:, 1]) / n
    return DropBound(100.0 * (worse - better) / n, float(np.quantile(drops, confidence)), confidence,
                     float((drops <= budget_pts + 1e-12).mean()), n, worse, better)


@dataclass
class ParetoPoint:
    """One distinct ILP solution of the tau sweep.

    Attributes:
        tau: smallest swept tau giving this assignment.
        assignment: ``{layer: multiplier name}``.
        energy_pj: multiplier energy per sample (ILP objective).
        reduction_pct: multiplier-energy reduction against the exact assignment.
        estimated_dl: summed estimate of the loss change.
        measured: paired drop on the validation split, when evaluated.
        accuracy: validation accuracy (percent), when evaluated.
        accepted: decision of the budget rule, when evaluated.
    """

    tau: float
    assignment: dict[str, str]
    energy_pj: float
    reduction_pct: float
    estimated_dl: float
    measured: DropBound | None = None
    accuracy: float | None = None
    accepted: bool | None = None


@dataclass
class BudgetResult:
    """Outcome of the budget search.

    Attributes:
        assignment: chosen ``{layer: multiplier name}`` (all exact when nothing passed).
        chosen: its `ParetoPoint` (None for the exact fallback).
        points: the whole sweep front, ordered by tau.
        base_accuracy: validation accuracy of the exact model (percent).
        evaluations: emulated evaluations run (the exact baseline and screened ones included).
        explanation: how the choice was made.
        timings: seconds per stage (``ilp_sweep``, ``evaluation``, ``total``).
        screened: evaluations stopped after the validation prefix (clear rejections).
        passes: cost of the approximate candidates' evaluations in full validation passes (a prefix
            evaluation counts its share); at most ``max_evaluations``.
    """

    assignment: dict[str, str]
    chosen: ParetoPoint | None
    points: list[ParetoPoint]
    base_accuracy: float
    evaluations: int
    explanation: str
    timings: dict[str, float] = field(default_factory=dict)
    screened: int = 0
    passes: float = 0.0


def tau_grid(problem: KnapsackProblem, n_taus: int = 40) -> np.ndarray:
    """0 plus a geometric grid from the smallest positive risk to the largest reachable total risk."""
    hi = problem.tau_range()[1]
    pos = np.concatenate([r[r > 0] for r in problem.risk]) if problem.risk else np.zeros(0)
    if hi <= 0 or pos.size == 0:
        return np.array([0.0])
    lo = max(float(pos.min()), hi * 1e-6)
    return np.unique(np.concatenate([[0.0], np.geomspace(lo, hi, max(n_taus - 1, 1))]))


def sweep(problem: KnapsackProblem, taus: np.ndarray) -> list[tuple[float, IlpSolution]]:
    """Distinct ILP solutions over `taus` (ascending), the all-exact assignment left out."""
    seen, out = {tuple(problem.exact)}, []
    for tau in taus:
        sol = solve_knapsack(problem, float(tau))
        key = tuple(sol.choice)
        if key not in seen:
            seen.add(key)
            out.append((float(tau), sol))
    return out


def suspects(problem: KnapsackProblem, ok: list[int], bad: list[int]) -> list[tuple[int, int]]:
    """``(layer index, option index)`` of every approximate substitution `bad` makes beyond `ok` (a layer
    reverted to its exact multiplier is no suspect: exact options are never banned)."""
    return [(i, c) for i, (c, a) in enumerate(zip(bad, ok, strict=True)) if c != a and c != problem.exact[i]]


def _accepts_part(evaluator: Evaluator) -> bool:
    return bool(getattr(evaluator, "accepts_part", False))


def search_budget(
    model: nn.Module,
    library,
    problem: KnapsackProblem,
    evaluator: Evaluator,
    budget_pts: float = 1.0,
    *,
    confidence: float | None = None,
    n_taus: int = 40,
    max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
    learn_cuts: bool = True,
    screen: int = 1000,
    apply_fn: ApplyFn | None = None,
    seed: int = 0,
    attribution: str = "loss",
    rescale_layers: bool = True,
    bisection: str = DEFAULT_BISECTION,
) -> BudgetResult:
    """Largest-saving ILP solution whose measured validation drop passes the budget rule.

    Args:
        model: the quantized model; left with exact multipliers on return.
        library: the `Library` the assignment names refer to.
        problem: knapsack candidates (`build_problem`).
        evaluator: ``model -> per-sample correctness`` on the validation split; when it has a true
            ``accepts_part`` attribute, ``evaluator(model, part=slice(a, b))`` evaluates samples a..b-1.
        budget_pts: allowed top-1 drop in percentage points.
        confidence: one-sided level of the drop's upper bound used to accept (default
            `default_confidence` of `max_evaluations`).
        n_taus: tau grid size of the sweep.
        max_evaluations: cost of the approximate candidates' evaluations at most, in full validation
            passes (prefix passes count their share; the exact baseline is extra); a candidate is only
            started when its whole evaluation fits.
        learn_cuts: after the bisection, search past rejections with no-good cuts (see module doc).
        screen: validation samples of the screening prefix (0: no screening).
        apply_fn: ``(model, assignment, library)`` applying multipliers in place; default `approximate_`.
        seed: bootstrap seed.
        attribution: how a rejection's substitutions are compared on the prefix: ``"loss"`` (mean per-sample
            loss, when the evaluator has ``results(model, part)`` giving an `EvalResult`) or ``"accuracy"``
            (wrong answers).
        rescale_layers: with loss attribution, also scale the banned substitution's layer's estimates by its
            measured / estimated loss change (at most `MAX_RISK_SCALE`).
        bisection: which bracket point to measure next, one of `BISECTIONS` (all keep bisection's
            ``ceil(log2(m + 1))`` bound; see `_bisection_point`).

    Returns:
        A `BudgetResult`.

    Raises:
        ValueError: negative budget, `max_evaluations` < 1, an unknown `attribution` or `bisection`.
    """
    if budget_pts < 0:
        raise ValueError(f"budget must be >= 0 points, got {budget_pts}")
    if max_evaluations < 1:
        raise ValueError(f"max_evaluations must be >= 1, got {max_evaluations}")
    if attribution not in ("loss", "accuracy"):
        raise ValueError(f"attribution must be 'loss' or 'accuracy', got {attribution!r}")
    if bisection not in BISECTIONS:
        raise ValueError(f"bisection must be one of {BISECTIONS}, got {bisection!r}")
    confidence = default_confidence(max_evaluations) if confidence is None else confidence
    apply_fn = apply_fn or default_apply()
    if rescale_layers:  # rescaling changes risks in place: work on a copy
        problem = problem.copy()
    t0 = time.perf_counter()
    ref_cost = problem.choice_cost(problem.exact)[0]
    sols = sweep(problem, tau_grid(problem, n_taus))
    known = {tuple(problem.exact)} | {tuple(s.choice) for _, s in sols}
    cuts: list[list[tuple[int, int]]] = []
    retries: set[int] = set()  # ids of points found after a ban (not on the sweep grid)
    short: set[tuple[int, int]] = set()  # substitutions blamed and still underestimated (see `rescale`)

    def point(tau: float, s: IlpSolution) -> ParetoPoint:
        return ParetoPoint(tau, s.assignment, s.cost, _reduction(s.cost, ref_cost), s.risk)

    points = [point(tau, s) for tau, s in sols]
    t_sweep = time.perf_counter() - t0
    t_refine = 0.0

    t1 = time.perf_counter()
    apply_fn(model, {}, library)
    rich = attribution == "loss" and callable(getattr(evaluator, "results", None))
    base_eval = evaluator.results(model) if rich else None
    base = np.asarray(base_eval.correct if rich else evaluator(model), bool)
    base_acc = 100.0 * float(base.mean())
    prefix = screen if _accepts_part(evaluator) and 0 < screen < base.size // 2 else 0
    by_loss = rich and prefix > 0
    # mean loss on the prefix of every assignment evaluated there (attribution="loss")
    prefix_loss: dict[tuple[int, ...], float] = {}
    if by_loss:
        prefix_loss[tuple(problem.exact)] = float(np.mean(base_eval.loss[:prefix]))
    spent = 0.0  # approximate-candidate evaluations, in full-validation equivalents
    evaluations, screened, lo, hi = 1, 0, -1, len(points)

    # a first look at one evaluation batch of the prefix rejects hopeless candidates at a fraction of the cost
    first_look = int(getattr(evaluator, "batch_size", 0) or 0)
    first_look = first_look if prefix and 0 < first_look < prefix else 0

    def on_prefix(assignment: dict[str, str], look_first: bool = False) -> np.ndarray:
        """Correctness on the screening prefix (on everything when the evaluator takes no ``part``). With
        `look_first`, only the first look's samples when they already screen the candidate out."""
        nonlocal spent, evaluations
        apply_fn(model, assignment, library)
        evaluations += 1
        if not prefix:
            spent += 1.0
            return np.asarray(evaluator(model), bool)
        looks = [(0, first_look), (first_look, prefix)] if look_first and first_look else [(0, prefix)]
        correct, losses = [], []
        for a, b in looks:
            spent += (b - a) / base.size
            res = evaluator.results(model, part=slice(a, b)) if by_loss else None
            correct.append(np.asarray(res.correct if by_loss else evaluator(model, part=slice(a, b)), bool))
            losses.append(res.loss if by_loss else None)
            if b < prefix and screens_out(correct[0]):
                return correct[0]
        if by_loss:
            prefix_loss[tuple(_choice(problem, assignment))] = float(np.mean(np.concatenate(losses)))
        return np.concatenate(correct)

    def screens_out(part: np.ndarray) -> bool:
        """Whether even the lower 95 % bound of the drop on these first samples exceeds the budget."""
        return paired_drop(base[:part.size], part, budget_pts, 0.05, seed=seed).upper_pts > budget_pts

    def harm(choice: list[int]) -> float:
        """How much an assignment hurts on the prefix: its mean per-sample loss (`attribution="loss"`),
        else its count of wrong answers."""
        if by_loss:
            key = tuple(choice)
            if key not in prefix_loss:
                on_prefix(problem.assignment(choice))
            return prefix_loss[key]
        return float(-on_prefix(problem.assignment(choice)).sum())

    def culprit(ok: list[int], changes: list[tuple[int, int]]) -> tuple[int, int] | None:
        """The substitution of `changes` (beyond `ok`) that alone hurts the most (on the prefix); None when
        there is none (the rejection only reverts layers to exact multipliers: nothing to ban)."""
        if len(changes) <= 1:
            return changes[0] if changes else None
        harms = [harm(_with(ok, change)) for change in changes]
        return changes[int(np.argmax(harms))]

    def rescale(ok: list[int], change: tuple[int, int]) -> bool:
        """Scale the layer of substitution `change` (positive risks only) by its measured / estimated loss
        change on top of `ok` (1 to `MAX_RISK_SCALE`): its siblings, as underestimated as it, stop being
        proposed one by one. Returns whether the estimate now covers the measurement (False: not measured,
        or underestimated by more than `MAX_RISK_SCALE`)."""
        i, c = change
        trial = _with(ok, change)
        if not by_loss or tuple(trial) not in prefix_loss or tuple(ok) not in prefix_loss:
            return False  # only from measurements already made
        measured = prefix_loss[tuple(trial)] - prefix_loss[tuple(ok)]
        estimated = float(problem.risk[i][c] - problem.risk[i][ok[i]])
        factor = MAX_RISK_SCALE if estimated <= 0 else float(np.clip(measured / estimated, 1.0, MAX_RISK_SCALE))
        if measured > 0 and factor > 1.0:
            problem.scale_layer(i, factor)
            log.info("scaled %s's estimates by %.2f (measured %.4g, estimated %.4g)", problem.layers[i], factor,
                     measured, estimated)
        return measured <= factor * estimated

    def retry() -> ParetoPoint | None:
        """Ban the worst substitution of the first rejection beyond the last acceptance, solve again:
        the next candidate saving `MIN_GAIN_PCT` more than the acceptance, or None."""
        nonlocal t_refine
        ok = _choice(problem, points[lo].assignment) if lo >= 0 else list(problem.exact)
        bad = _choice(problem, points[hi].assignment)
        if not any(bad[i] == c for (i, c), in cuts):  # else already explained by a ban
            changes = suspects(problem, ok, bad)
            trials = [ch for ch in changes if tuple(_with(ok, ch)) not in prefix_loss] if len(changes) > 1 else []
            if not affordable(len(trials)):
                return None  # the blame trials would leave no room to evaluate what they lead to
            worst = culprit(ok, changes)
            if worst is None:
                return None
            cuts.append([worst])
            # Scale every layer the blame trials found underestimated, not only the culprit's: the trials are
            # paid for. Another suspect counts only where its estimate rose (against a zero or negative
            # estimate, a change near the prefix's noise would scale its layer by MAX_RISK_SCALE).
            for change in changes:
                i, c = change
                if change == worst or problem.risk[i][c] > problem.risk[i][ok[i]]:
                    if not (rescale_layers and rescale(ok, change)):
                        short.add(change)
                        log.info("%s=%s stays underestimated", problem.layers[i], problem.options[i][c])
            log.info("banned %s=%s", problem.layers[worst[0]], problem.options[worst[0]][worst[1]])
        floor = points[lo].reduction_pct if lo >= 0 else 0.0
        # B from the sweep: retry at its tau (optimistic); B itself a retry: halfway first
        taus = sorted({q.tau for q in points[hi:]})
        if id(points[hi]) in retries:
            taus.insert(0, 0.5 * ((points[lo].tau if lo >= 0 else 0.0) + points[hi].tau))
        t_r = time.perf_counter()
        cap = lowest_rejected_estimate(problem, points, short)
        try:
            for tau in taus:
                sol = solve_knapsack(problem, tau, cuts=cuts)
                if tuple(sol.choice) not in known and _reduction(sol.cost, ref_cost) - floor >= MIN_GAIN_PCT:
                    if sol.risk >= cap:  # a larger tau only finds riskier candidates: stop here
                        log.info("no retry: the next candidate (tau=%.4g, %.2f%%) is estimated at %.4g, at least "
                                 "the %.4g of an assignment measured to fail", tau, _reduction(sol.cost, ref_cost),
                                 sol.risk, cap)
                        return None
                    known.add(tuple(sol.choice))
                    new = point(tau, sol)
                    retries.add(id(new))
                    log.info("next candidate (tau=%.4g, with %d bans) saves %.2f%%", tau, len(cuts),
                             new.reduction_pct)
                    return new
            return None
        finally:
            t_refine += time.perf_counter() - t_r

    def affordable(prefixes: int = 0) -> bool:
        """Whether `prefixes` prefix evaluations and then one whole candidate still fit in the budget."""
        share = prefix / base.size if prefix else 1.0
        return spent + prefixes * share + 1.0 <= max_evaluations + 1e-9

    try:
        while affordable():
            worth = _worth_measuring(points, lo, hi)
            if not worth:  # bracket exhausted: ban the rejection's worst substitution, solve again
                new = retry() if learn_cuts and hi < len(points) else None
                if new is None:
                    break
                points.insert(lo + 1, new)
                hi += 1
                worth = [lo + 1]
            mid = _bisection_point(points, worth, lo, hi, bisection, budget_pts)
            p = points[mid]
            part = on_prefix(p.assignment, look_first=True)
            if prefix:
                if screens_out(part):
                    screened += 1
                    p.measured = paired_drop(base[:part.size], part, budget_pts, confidence, seed=seed)
                    p.accuracy, p.accepted = 100.0 * float(part.mean()), False
                    log.info("tau=%.4g reduction=%.2f%% screened out: drop %.2f on %d samples", p.tau,
                             p.reduction_pct, p.measured.drop_pts, part.size)
                    hi = mid
                    continue
                rest = np.asarray(evaluator(model, part=slice(prefix, None)), bool)
                spent += 1.0 - prefix / base.size
                correct = np.concatenate([part, rest])
            else:
                correct = part
            p.measured = paired_drop(base, correct, budget_pts, confidence, seed=seed)
            p.accuracy = 100.0 * float(correct.mean())
            p.accepted = p.measured.upper_pts <= budget_pts
            log.info("tau=%.4g reduction=%.2f%% drop=%.2f (upper %.2f) -> %s", p.tau, p.reduction_pct,
                     p.measured.drop_pts, p.measured.upper_pts, "accept" if p.accepted else "reject")
            if p.accepted:
                lo = mid
            else:
                hi = mid
    finally:
        apply_fn(model, {}, library)
    t_eval = time.perf_counter() - t1 - t_refine
    timings = {"ilp_sweep": t_sweep + t_refine, "evaluation": t_eval, "total": time.perf_counter() - t0}
    if lo < 0:
        why = ("no approximate assignment passed the budget rule "
               f"(upper {confidence:.0%} bound of the paired drop <= {budget_pts} pt); "
               "keeping exact multipliers"
               if points else "the sweep found no approximate assignment; keeping exact multipliers")
        return BudgetResult({k: problem.options[i][problem.exact[i]] for i, k in enumerate(problem.layers)},
                            None, points, base_acc, evaluations, why, timings, screened, spent)
    chosen = points[lo]
    why = (f"tau={chosen.tau:.4g}: measured drop {chosen.measured.drop_pts:.2f} pt, upper "
           f"{confidence:.0%} bound {chosen.measured.upper_pts:.2f} pt <= budget {budget_pts} pt "
           f"(P(drop <= budget) ~ {chosen.measured.prob_within_budget:.2f}); "
           f"{evaluations} evaluations ({screened} stopped early) over {len(points)} distinct solutions")
    return BudgetResult(dict(chosen.assignment), chosen, points, base_acc, evaluations, why, timings, screened,
                        spent)


def lowest_rejected_estimate(problem: KnapsackProblem, points: list[ParetoPoint],
                             underestimated: set[tuple[int, int]] = frozenset()) -> float:
    """Smallest estimated loss change, under `problem`'s current (rescaled) estimates, of the points measured
    and rejected so far (screened out included), leaving out those making an `underestimated` substitution
    ``(layer index, option index)`` (their estimates do not say how much they lost); infinity when there is
    none."""
    out = float("inf")
    for q in points:
        if q.accepted is False:
            choice = _choice(problem, q.assignment)
            if not any(choice[i] == c for i, c in underestimated):
                out = min(out, problem.choice_cost(choice)[1])
    return out


def _worth_measuring(points: list[ParetoPoint], lo: int, hi: int) -> list[int]:
    """Indices strictly between the bracket's ends (accepted `lo`, -1 for none; rejected `hi`) of the points
    that save at least `MIN_GAIN_PCT` more than the accepted one."""
    floor = _accepted_reduction(points, lo)
    return [j for j in range(lo + 1, hi) if points[j].reduction_pct - floor >= MIN_GAIN_PCT]


def _accepted_reduction(points: list[ParetoPoint], lo: int) -> float:
    """Reduction of the bracket's accepted end `lo` (0 % while nothing is accepted: the exact model)."""
    return points[lo].reduction_pct if lo >= 0 else 0.0


def _bisection_point(points: list[ParetoPoint], worth: list[int], lo: int, hi: int, mode: str,
                     budget_pts: float) -> int:
    """Which of `worth` (indices strictly inside the bracket: `lo` accepted, -1 for none; `hi` rejected,
    ``len(points)`` for none) to measure next, by `mode` (see `BISECTIONS`).

    ``"index"`` takes the index median. The others do too while neither end is measured (a rejection above
    it is usually screened out on a prefix, an acceptance below it costs a whole pass), and then take the
    point of `worth` nearest a target among those that keep bisection's bound: a bracket of ``m`` points
    closes in ``r = ceil(log2(m + 1))`` measurements as long as each leaves at most ``2**(r - 1) - 1``
    points on either side. ``"reduction"`` aims at the middle of the bracket's reductions, ``"aimed"`` at
    the estimated loss change where the upper bounds of the drops measured at the bracket's ends,
    interpolated linearly (the exact model at 0 when nothing was accepted), reach the budget.
    ``"balanced"`` keeps the index median unless its reduction lies in the bottom quarter of the bracket's
    reductions, where the tau grid crowds its small taus, and aims as ``"reduction"`` there.
    """
    m = len(worth)
    if mode == "index" or (lo < 0 and hi == len(points)):
        return worth[m // 2]
    floor = _accepted_reduction(points, lo)
    ceiling = points[hi].reduction_pct if hi < len(points) else points[worth[-1]].reduction_pct
    if mode == "balanced" and points[worth[m // 2]].reduction_pct >= floor + CROWDED_SHARE * (ceiling - floor):
        return worth[m // 2]
    side = 2 ** (int(np.ceil(np.log2(m + 1))) - 1) - 1
    allowed = [k for k in range(m) if k <= side and m - 1 - k <= side]
    if mode == "aimed" and hi < len(points):
        lo_dl, lo_up = (points[lo].estimated_dl, points[lo].measured.upper_pts) if lo >= 0 else (0.0, 0.0)
        hi_dl, hi_up = points[hi].estimated_dl, points[hi].measured.upper_pts
        frac = float(np.clip((budget_pts - lo_up) / (hi_up - lo_up), 0.0, 1.0)) if hi_up > lo_up else 0.5
        target, value = lo_dl + frac * (hi_dl - lo_dl), [points[j].estimated_dl for j in worth]
    else:  # "reduction", "balanced" off the index median, or "aimed" with nothing rejected yet
        target, value = 0.5 * (floor + ceiling), [points[j].reduction_pct for j in worth]
    return worth[min(allowed, key=lambda k: (abs(value[k] - target), abs(k - m // 2)))]


def _with(choice: list[int], change: tuple[int, int]) -> list[int]:
    """`choice` with layer ``change[0]`` set to option ``change[1]``."""
    out = list(choice)
    out[change[0]] = change[1]
    return out


def _choice(problem: KnapsackProblem, assignment: dict[str, str]) -> list[int]:
    return [problem.options[i].index(assignment[layer]) for i, layer in enumerate(problem.layers)]


def _reduction(cost: float, ref: float) -> float:
    return 100.0 * (1.0 - cost / ref) if ref > 0 else 0.0
