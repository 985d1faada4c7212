"""Operand formats: bit widths and signedness of the two multiplier inputs (DESIGN.md section 1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MIN_BITS = 2
MAX_BITS = 8
_FORMAT_RE = re.compile(r"^([us])(\d+)x([us])(\d+)$")


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """Smallest and largest integer code of a `bits`-wide operand (two's complement when signed)."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@dataclass(frozen=True)
class OperandFormat:
    """Activation operand `a` (first, rows of a table) times weight operand `w` (second, columns).

    Args:
        a_bits: activation bit width, 2..8.
        a_signed: whether activation codes are two's complement.
        w_bits: weight bit width, 2..8.
        w_signed: whether weight codes are two's complement.

    Example:
        >>> OperandFormat.parse("u4xs3").a_codes().tolist()[:3]
        [0, 1, 2]
    """

    a_bits: int
    a_signed: bool
    w_bits: int
    w_signed: bool

    def __post_init__(self) -> None:
        for label, bits in (("a_bits", self.a_bits), ("w_bits", self.w_bits)):
            if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool):
                raise TypeError(f"{label} must be an int, got {bits!r}")
            if not MIN_BITS <= bits <= MAX_BITS:
                raise ValueError(f"{label}={bits} is outside the supported range {MIN_BITS}..{MAX_BITS}")

    @property
    def name(self) -> str:
        """Canonical short name, e.g. ``u4xs4`` (unsigned 4-bit activation x signed 4-bit weight)."""
        a = "s" if self.a_signed else "u"
        w = "s" if self.w_signed else "u"
        return f"{a}{self.a_bits}x{w}{self.w_bits}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: str) -> OperandFormat:
        """Parse ``u4xs4`` / ``s8xs8`` style names; raises ValueError naming the expected form."""
        match = _FORMAT_RE.match(str(text).strip().lower())
        if match is None:
            raise ValueError(
                f"unknown operand format {text!r}: expected e.g. 'u4xs4' "
                "(u/s = unsigned/signed, activation first, weight second, 2..8 bits)"
            )
        a_sign, a_bits, w_sign, w_bits = match.groups()
        return cls(int(a_bits), a_sign == "s", int(w_bits), w_sign == "s")

    @property
    def a_range(self) -> tuple[int, int]:
        return code_range(self.a_bits, self.a_signed)

    @property
    def w_range(self) -> tuple[int, int]:
        return code_range(self.w_bits, self.w_signed)

    def a_codes(self) -> np.ndarray:
        """All activation codes in ascending order (row index = code - a_min)."""
        lo, hi = self.a_range
        return np.arange(lo, hi + 1, dtype=np.int64)

    def w_codes(self) -> np.ndarray:
        """All weight codes in ascending order (column index = code - w_min)."""
        lo, hi = self.w_range
        return np.arange(lo, hi + 1, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of a lookup table of this format: (|A|, |W|)."""
        return 1 << self.a_bits, 1 << self.w_bits

    def exact_table(self) -> np.ndarray:
        """The exact product table ``u * v`` (int64)."""
        return np.outer(self.a_codes(), self.w_codes())

    def to_dict(self) -> dict:
        return {
            "a_bits": self.a_bits,
            "a_signed": self.a_signed,
            "w_bits": self.w_bits,
            "w_signed": self.w_signed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> OperandFormat:
        return cls(int(data["a_bits"]), bool(data["a_signed"]), int(data["w_bits"]), bool(data["w_signed"]))
