"""Counting matrices and Taylor estimators of the loss change of each (layer, AppMul) pair."""

from fames.sensitivity.counting import CountingResult, LayerCounts, counting_matrices
from fames.sensitivity.estimators import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    estimate_layer,
    layer_sensitivities,
    layer_sensitivity,
    sensitivity_table,
)

__all__ = [
    "CountingResult", "DEFAULT_ESTIMATOR", "ESTIMATORS", "LayerCounts", "counting_matrices",
    "estimate_layer", "layer_sensitivities", "layer_sensitivity", "sensitivity_table",
]
