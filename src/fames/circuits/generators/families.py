"""Approximate multiplier families, all built on the Baugh-Wooley partial-product matrix (any signedness)."""

from __future__ import annotations

from fames.circuits.generators import pp
from fames.circuits.generators.bits import Builder, Sig
from fames.circuits.generators.design import Design, finish
from fames.multipliers.formats import OperandFormat


def exact(fmt: OperandFormat) -> Design:
    """Exact multiplier: AND/NAND partial products, Dadda tree, ripple-carry adder."""
    bld = Builder(fmt)
    return finish(bld, "exact", "exact", {}, pp.sum_columns(bld, pp.columns(bld, pp.all_terms(fmt))))


def truncated(fmt: OperandFormat, k: int, compensate: bool = False) -> Design:
    """Drop every partial product in the `k` least-significant columns; optionally add their mean.

    The compensation constant is the expected value of the dropped terms for uniform operands
    (each term is 1 with probability 1/4), rounded to an integer.
    """
    _check_range("k", k, 1, pp.out_bits(fmt) - 1)
    bld = Builder(fmt)
    kept = [(i, j) for i, j in pp.all_terms(fmt) if i + j >= k]
    dropped = [(i, j) for i, j in pp.all_terms(fmt) if i + j < k]
    comp = 0
    if compensate:
        comp = round(sum((-1 if pp.is_negative(fmt, i, j) else 1) * (1 << (i + j)) for i, j in dropped) / 4)
    suffix = f"trunc_k{k}" + ("_comp" if compensate else "")
    params = {"k": k, "compensate": compensate, "constant": comp}
    return finish(bld, "trunc", suffix, params, pp.sum_columns(bld, pp.columns(bld, kept, comp)))


def broken_array(fmt: OperandFormat, hbl: int, vbl: int) -> Design:
    """Broken-array multiplier (Mahdiani et al. 2010) on a carry-save array.

    Cells above the horizontal break line (rows ``j < hbl``) and right of the vertical break line
    (columns ``i + j < vbl``) are omitted, with their partial products.
    """
    _check_range("hbl", hbl, 0, fmt.w_bits - 1)
    _check_range("vbl", vbl, 0, pp.out_bits(fmt) - 1)
    bld = Builder(fmt)
    width = pp.out_bits(fmt)
    kept = [(i, j) for i, j in pp.all_terms(fmt) if j >= hbl and i + j >= vbl]
    rows = [[(i + j, pp.term_bit(bld, i, j)) for i, j in kept if j == row] for row in range(fmt.w_bits)]
    const: list[list[Sig]] = [[] for _ in range(width)]
    pp.add_constant(bld, const, pp.term_constant(fmt, kept))
    rows.insert(0, [(c, bit) for c, bits in enumerate(const) for bit in bits])
    cols = pp.carry_save_array(bld, [r for r in rows if r], width)
    return finish(bld, "bam", f"bam_h{hbl}_v{vbl}", {"hbl": hbl, "vbl": vbl}, pp.sum_columns(bld, cols))


def perforated(fmt: OperandFormat, rows: tuple[int, ...]) -> Design:
    """Partial-product perforation (Zervakis et al. 2016): drop rows ``a * b_j`` for j in `rows`."""
    rows = tuple(sorted(set(rows)))
    if not rows or any(not 0 <= j < fmt.w_bits for j in rows):
        raise ValueError(f"perforated rows {rows} must be a non-empty subset of 0..{fmt.w_bits - 1}")
    bld = Builder(fmt)
    kept = [(i, j) for i, j in pp.all_terms(fmt) if j not in rows]
    suffix = "perf_r" + "".join(str(j) for j in rows)
    return finish(bld, "perf", suffix, {"rows": list(rows)}, pp.sum_columns(bld, pp.columns(bld, kept)))


def approx_adders(fmt: OperandFormat, cell: str, k: int) -> Design:
    """Exact partial products; full adders of the `k` LSB columns replaced by an approximate cell."""
    if cell not in pp.FA_CELLS or cell == "exact":
        raise ValueError(f"unknown approximate full adder {cell!r}; choose from {sorted(pp.FA_CELLS)[1:]}")
    _check_range("k", k, 1, pp.out_bits(fmt))
    bld = Builder(fmt)
    cols = pp.columns(bld, pp.all_terms(fmt))
    out = pp.sum_columns(bld, cols, pp.FA_CELLS[cell], k)
    return finish(bld, "approx_fa", f"{cell}_k{k}", {"cell": cell, "k": k}, out)


def approx_compressors(fmt: OperandFormat, k: int) -> Design:
    """Approximate 4:2 compressors (`pp.compressor_42`) reduce the `k` LSB columns first, then exact Dadda."""
    _check_range("k", k, 1, pp.out_bits(fmt))
    bld = Builder(fmt)
    cols = pp.columns(bld, pp.all_terms(fmt))
    pp.compress_42(bld, cols, k)
    return finish(bld, "comp42", f"comp42_k{k}", {"k": k}, pp.sum_columns(bld, cols))


def recursive(fmt: OperandFormat, level: int) -> Design:
    """Recursive multiplier from 2x2 blocks summed by an adder tree (Kulkarni et al. 2011).

    The 2x2 block at tile (ti, tj) (bits 2ti, 2ti+1 of a and 2tj, 2tj+1 of b) is Kulkarni's
    approximate block (3 x 3 -> 7: middle bits ORed, no carry) when ``ti + tj < level``, else exact.
    Bits outside full tiles (odd widths) stay single partial products; signed formats use the
    Baugh-Wooley partial-product bits inside the blocks.
    """
    ta, tw = fmt.a_bits // 2, fmt.w_bits // 2
    _check_range("level", level, 1, ta + tw - 1)
    bld = Builder(fmt)
    terms = pp.all_terms(fmt)
    cols: list[list[Sig]] = [[] for _ in range(pp.out_bits(fmt))]
    in_tile = set()
    for ti in range(ta):
        for tj in range(tw):
            i, j = 2 * ti, 2 * tj
            in_tile |= {(i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1)}
            p00, p10 = pp.term_bit(bld, i, j), pp.term_bit(bld, i + 1, j)
            p01, p11 = pp.term_bit(bld, i, j + 1), pp.term_bit(bld, i + 1, j + 1)
            c = i + j
            cols[c].append(p00)
            if ti + tj < level:
                cols[c + 1].append(bld.or_(p10, p01))
                cols[c + 2].append(p11)
            else:
                s1, c1 = bld.half_adder(p10, p01)
                s2, c2 = bld.half_adder(p11, c1)
                cols[c + 1].append(s1)
                cols[c + 2].append(s2)
                if c + 3 < len(cols):
                    cols[c + 3].append(c2)
    for i, j in terms:
        if (i, j) not in in_tile:
            cols[i + j].append(pp.term_bit(bld, i, j))
    pp.add_constant(bld, cols, pp.term_constant(fmt, terms))
    return finish(bld, "recursive", f"rec2x2_l{level}", {"level": level}, pp.sum_columns(bld, cols))


def operand_rounding(fmt: OperandFormat, ra: int, rb: int, mode: str = "trunc") -> Design:
    """Exact multiplier on operands whose `ra` / `rb` LSBs are forced to 0 (``trunc``) or 10..0 (``mid``)."""
    if mode not in ("trunc", "mid"):
        raise ValueError(f"operand rounding mode {mode!r}: choose 'trunc' or 'mid'")
    _check_range("ra", ra, 0, fmt.a_bits - 1)
    _check_range("rb", rb, 0, fmt.w_bits - 1)
    if ra == rb == 0:
        raise ValueError("operand_rounding needs ra > 0 or rb > 0")
    bld = Builder(fmt)

    def cut(bits: list[Sig], r: int) -> list[Sig]:
        fill = [bld.zero] * r
        if mode == "mid" and r:
            fill[r - 1] = bld.one
        return fill + bits[r:]

    a, b = cut(bld.a, ra), cut(bld.b, rb)
    cols = pp.columns(bld, pp.all_terms(fmt), a=a, b=b)
    params = {"ra": ra, "rb": rb, "mode": mode}
    return finish(bld, "operand", f"op{mode}_a{ra}_b{rb}", params, pp.sum_columns(bld, cols))


def _check_range(label: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{label}={value!r} is outside the allowed range {lo}..{hi}")
