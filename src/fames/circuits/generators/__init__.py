"""Structural Verilog generators of (approximate) multipliers, each with a bit-level Python model.

Example:
    >>> from fames.multipliers.formats import OperandFormat
    >>> d = truncated(OperandFormat.parse("u4xu4"), k=2)
    >>> d.name, d.table.shape
    ('u4xu4_trunc_k2', (16, 16))
"""

from fames.circuits.generators.design import Design
from fames.circuits.generators.families import (
    approx_adders,
    approx_compressors,
    broken_array,
    exact,
    operand_rounding,
    perforated,
    recursive,
    truncated,
)
from fames.circuits.generators.sweep import enumerate_2x2, enumerate_designs

__all__ = [
    "Design",
    "approx_adders",
    "approx_compressors",
    "broken_array",
    "enumerate_2x2",
    "enumerate_designs",
    "exact",
    "operand_rounding",
    "perforated",
    "recursive",
    "truncated",
]
