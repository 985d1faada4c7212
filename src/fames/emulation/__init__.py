"""Exact and fast emulation of approximate multipliers (DESIGN.md section 2)."""

from fames.emulation.api import (
    ApproxEmulator,
    approximate_,
    assignment_of,
    load_assignment,
    restore_,
    save_assignment,
)
from fames.emulation.functional import (
    WeightPlan,
    approx_conv2d,
    approx_linear,
    plan_conv2d_weight,
    plan_linear_weight,
)
from fames.emulation.plan import PreparedTable, prepare

__all__ = [
    "ApproxEmulator", "PreparedTable", "WeightPlan", "approx_conv2d", "approx_linear", "approximate_",
    "assignment_of", "load_assignment", "plan_conv2d_weight", "plan_linear_weight", "prepare", "restore_",
    "save_assignment",
]
