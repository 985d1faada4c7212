"""Selection: multiple-choice knapsack ILP, accuracy-budget search, genetic (NSGA-II) baseline, `select`."""

from fames.selection.api import Selection, select
from fames.selection.budget import BudgetResult, DropBound, ParetoPoint, paired_drop, search_budget
from fames.selection.evaluate import EvalResult, evaluate_model, make_evaluator
from fames.selection.genetic import GeneticResult, genetic_search
from fames.selection.ilp import IlpSolution, KnapsackProblem, build_problem, solve_knapsack

__all__ = [
    "BudgetResult", "DropBound", "EvalResult", "GeneticResult", "IlpSolution", "KnapsackProblem",
    "ParetoPoint", "Selection", "build_problem", "evaluate_model", "genetic_search", "make_evaluator",
    "paired_drop", "search_budget", "select", "solve_knapsack",
]
