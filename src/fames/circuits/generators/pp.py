"""Partial-product matrices (modified Baugh-Wooley for any signedness) and their reduction.

A product term ``(i, j)`` is ``a_i * b_j`` at column ``i + j``. Its weight is negative when exactly one
of ``a_i``, ``b_j`` is a sign bit; such a term ``-x 2^k`` is written ``(~x) 2^k - 2^k`` and the constants
are summed and added as constant-one bits modulo ``2^P``. Dropping a term removes its whole contribution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fames.circuits.generators.bits import Builder, Sig
from fames.multipliers.formats import OperandFormat

Cell = Callable[[Builder, Sig, Sig, Sig], tuple[Sig, Sig]]


def out_bits(fmt: OperandFormat) -> int:
    """Output width P = BA + BW."""
    return fmt.a_bits + fmt.w_bits


def all_terms(fmt: OperandFormat) -> list[tuple[int, int]]:
    """Every product term (i, j), rows j (weight bits) outer."""
    return [(i, j) for j in range(fmt.w_bits) for i in range(fmt.a_bits)]


def is_negative(fmt: OperandFormat, i: int, j: int) -> bool:
    """Whether term a_i b_j has negative weight (exactly one factor is a sign bit)."""
    return (fmt.a_signed and i == fmt.a_bits - 1) != (fmt.w_signed and j == fmt.w_bits - 1)


def term_bit(bld: Builder, i: int, j: int, a: list[Sig] | None = None, b: list[Sig] | None = None) -> Sig:
    """The partial-product bit of term (i, j): AND, or NAND for a negative-weight term."""
    a = bld.a if a is None else a
    b = bld.b if b is None else b
    bit = bld.and_(a[i], b[j])
    return bld.not_(bit) if is_negative(bld.fmt, i, j) else bit


def term_constant(fmt: OperandFormat, terms: Iterable[tuple[int, int]]) -> int:
    """Sum of the -2^k corrections of the negative terms among `terms`."""
    return -sum(1 << (i + j) for i, j in terms if is_negative(fmt, i, j))


def add_constant(bld: Builder, cols: list[list[Sig]], value: int) -> None:
    """Add `value` (any integer, taken modulo 2^P) as constant-one bits."""
    width = len(cols)
    value %= 1 << width
    for k in range(width):
        if (value >> k) & 1:
            cols[k].append(bld.one)


def columns(
    bld: Builder,
    terms: Iterable[tuple[int, int]],
    extra: int = 0,
    a: list[Sig] | None = None,
    b: list[Sig] | None = None,
) -> list[list[Sig]]:
    """Bit columns of the kept `terms` plus their sign constants plus `extra`."""
    terms = list(terms)
    cols: list[list[Sig]] = [[] for _ in range(out_bits(bld.fmt))]
    for i, j in terms:
        cols[i + j].append(term_bit(bld, i, j, a, b))
    add_constant(bld, cols, term_constant(bld.fmt, terms) + extra)
    return cols


# --- adder cells -------------------------------------------------------------------------------------


def fa_exact(bld: Builder, x: Sig, y: Sig, z: Sig) -> tuple[Sig, Sig]:
    return bld.full_adder(x, y, z)


def fa_ama2(bld: Builder, x: Sig, y: Sig, z: Sig) -> tuple[Sig, Sig]:
    """Approximate mirror adder 2 (Gupta et al. 2013): carry exact, sum = ~carry (wrong for 000, 111)."""
    carry = bld.maj(x, y, z)
    return bld.not_(carry), carry


def fa_ama5(bld: Builder, x: Sig, y: Sig, z: Sig) -> tuple[Sig, Sig]:
    """Approximate mirror adder 5 (Gupta et al. 2013): sum = y, carry = x (buffers only)."""
    return y, x


FA_CELLS: dict[str, Cell] = {"exact": fa_exact, "ama2": fa_ama2, "ama5": fa_ama5}


def compressor_42(bld: Builder, x1: Sig, x2: Sig, x3: Sig, x4: Sig) -> tuple[Sig, Sig]:
    """Approximate 4:2 compressor without carry chain (Momeni et al. 2015, design 2, non-inverted form).

    sum = (x1 ^ x2) | (x3 ^ x4), carry = x1 x2 | x3 x4: exact except for inputs 1010, 0101, 1001, 0110
    (2 -> 1) and 1111 (4 -> 2).
    """
    s = bld.or_(bld.xor(x1, x2), bld.xor(x3, x4))
    c = bld.or_(bld.and_(x1, x2), bld.and_(x3, x4))
    return s, c


# --- reduction -----------------------------------------------------------------------------------------


def _cell_for(col: int, approx_cols: int, cell: Cell) -> Cell:
    return cell if col < approx_cols else fa_exact


def compress_42(bld: Builder, cols: list[list[Sig]], approx_cols: int) -> None:
    """In place: reduce every column below `approx_cols` to < 4 bits with approximate 4:2 compressors."""
    width = len(cols)
    changed = True
    while changed:
        changed = False
        for c in range(min(approx_cols, width)):
            bits, out = cols[c], []
            while len(bits) >= 4:
                s, cy = compressor_42(bld, *bits[:4])
                bits = bits[4:]
                out.append(s)
                if c + 1 < width:
                    cols[c + 1].append(cy)
                changed = True
            cols[c] = out + bits


def dadda(
    bld: Builder, cols: list[list[Sig]], cell: Cell = fa_exact, approx_cols: int = 0
) -> list[list[Sig]]:
    """Dadda reduction to at most two bits per column; full adders below `approx_cols` use `cell`."""
    width = len(cols)
    cols = [list(c) for c in cols]
    while max(len(c) for c in cols) > 2:
        h_max = max(len(c) for c in cols)
        d = 2
        while int(d * 1.5) < h_max:
            d = int(d * 1.5)
        incoming: list[list[Sig]] = [[] for _ in range(width + 1)]
        new: list[list[Sig]] = []
        for c in range(width):
            bits = cols[c]
            h = len(bits) + len(incoming[c])
            out: list[Sig] = []
            while h > d and len(bits) >= 2:
                if h - d == 1 or len(bits) == 2:
                    s, cy = bld.half_adder(bits[0], bits[1])
                    bits, h = bits[2:], h - 1
                else:
                    s, cy = _cell_for(c, approx_cols, cell)(bld, bits[0], bits[1], bits[2])
                    bits, h = bits[3:], h - 2
                out.append(s)
                incoming[c + 1].append(cy)
            new.append(out + bits + incoming[c])
        cols = new
    return cols


def carry_save_array(bld: Builder, rows: list[list[tuple[int, Sig]]], width: int) -> list[list[Sig]]:
    """Row-by-row carry-save accumulation (array multiplier); returns columns of <= 3 bits."""
    cols: list[list[Sig]] = [[] for _ in range(width)]
    for row in rows:
        for col, bit in row:
            cols[col].append(bit)
        carries: list[list[Sig]] = [[] for _ in range(width + 1)]
        for c in range(width):
            bits = cols[c]
            while len(bits) >= 3:
                s, cy = bld.full_adder(bits[0], bits[1], bits[2])
                bits = [s] + bits[3:]
                carries[c + 1].append(cy)
            cols[c] = bits
        for c in range(width):
            cols[c] += carries[c]
    return cols


def ripple(bld: Builder, cols: list[list[Sig]], cell: Cell = fa_exact, approx_cols: int = 0) -> list[Sig]:
    """Final carry-propagate adder over columns of <= 2 bits; returns P output bits (carry-out dropped)."""
    carry = bld.zero
    out: list[Sig] = []
    for c, bits in enumerate(cols):
        assert len(bits) <= 2, "ripple() needs reduced columns"
        bits = bits + [carry]
        if len(bits) == 3:
            s, carry = _cell_for(c, approx_cols, cell)(bld, *bits)
        elif len(bits) == 2:
            s, carry = bld.half_adder(*bits)
        else:
            s, carry = bits[0], bld.zero
        out.append(s)
    return out


def sum_columns(
    bld: Builder, cols: list[list[Sig]], cell: Cell = fa_exact, approx_cols: int = 0
) -> list[Sig]:
    """Dadda tree then ripple-carry adder."""
    return ripple(bld, dadda(bld, cols, cell, approx_cols), cell, approx_cols)
