"""Multiplier data: operand formats, the AppMul type, error metrics, library files. No EDA here."""

from fames.multipliers.appmul import AppMul, HardwareFigures
from fames.multipliers.formats import OperandFormat
from fames.multipliers.library import Library, builtin_library, load_library, save_library
from fames.multipliers.lut_io import read_lut
from fames.multipliers.metrics import ErrorMetrics, error_metrics

__all__ = [
    "AppMul",
    "HardwareFigures",
    "OperandFormat",
    "ErrorMetrics",
    "error_metrics",
    "Library",
    "builtin_library",
    "load_library",
    "save_library",
    "read_lut",
]
