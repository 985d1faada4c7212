"""Read a user's lookup table (CSV or .npy) for a given operand format.

A LUT file holds the table ``T[u - a_min, v - w_min]`` of shape ``(2**a_bits, 2**w_bits)``: rows are
activation codes, columns weight codes, both ascending (two's complement range when signed).
CSV: comma-separated integers, one row per line, ``#`` comments allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fames.multipliers.formats import OperandFormat


def read_lut(path: str | os.PathLike, fmt: OperandFormat) -> np.ndarray:
    """Load the LUT at `path` (``.csv`` or ``.npy``) as an int64 table of ``fmt.shape``.

    Raises:
        ValueError: unknown suffix, unreadable file, wrong shape, non-numeric or non-integer values
            (the message names the file and the expected shape).
    """
    path = Path(path)
    expect = f"expected shape {fmt.shape} ({fmt.name}: rows = activation codes, columns = weight codes)"
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        elif suffix in (".csv", ".txt"):
            raw = np.loadtxt(path, delimiter=",", comments="#", dtype=np.float64, ndmin=2)
        else:
            raise ValueError(f"unsupported LUT file type {path.suffix!r}; use .csv or .npy")
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read LUT {path}: {' '.join(str(exc).split())}; {expect}") from None
    if raw.shape != fmt.shape:
        raise ValueError(f"LUT {path} has shape {raw.shape}; {expect}")
    if raw.dtype == bool or not (
        np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)
    ):
        raise ValueError(f"LUT {path} has dtype {raw.dtype}; expected integers, {expect}")
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.round(raw)):
            raise ValueError(f"LUT {path} holds non-integer values; expected integers, {expect}")
        if np.abs(raw).max(initial=0) >= 2**62:
            raise ValueError(f"LUT {path} holds values too large for int64")
    return raw.astype(np.int64)
