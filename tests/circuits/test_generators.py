"""Structural generators: bit-level models vs integer references, and Verilog vs iverilog simulation."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from fames.circuits import generators as gen
from fames.circuits.iverilog_sim import iverilog_available, simulate_table
from fames.multipliers.formats import OperandFormat

ALL_FORMATS = [
    OperandFormat(a, sa, w, sw)
    for a, w in itertools.product(range(2, 9), repeat=2)
    for sa, sw in itertools.product((False, True), repeat=2)
]
needs_iverilog = pytest.mark.skipif(
    not iverilog_available(), reason="iverilog/vvp not installed (apt iverilog)"
)


# --- independent integer references ------------------------------------------------------------------


def _bit_weights(bits: int, signed: bool) -> list[int]:
    return [-(1 << i) if signed and i == bits - 1 else 1 << i for i in range(bits)]


def _wrap(values: np.ndarray, fmt: OperandFormat) -> np.ndarray:
    width = fmt.a_bits + fmt.w_bits
    raw = np.mod(values, 1 << width)
    if fmt.a_signed or fmt.w_signed:
        raw = np.where(raw >= 1 << (width - 1), raw - (1 << width), raw)
    return raw


def _terms_reference(fmt: OperandFormat, keep, const: int = 0) -> np.ndarray:
    """Sum of the kept signed partial-product terms a_i b_j (by integer arithmetic), wrapped to P bits."""
    u, v = np.meshgrid(fmt.a_codes(), fmt.w_codes(), indexing="ij")
    wa, wb = _bit_weights(fmt.a_bits, fmt.a_signed), _bit_weights(fmt.w_bits, fmt.w_signed)
    total = np.full(u.shape, const, dtype=np.int64)
    for i in range(fmt.a_bits):
        for j in range(fmt.w_bits):
            if keep(i, j):
                total += ((u >> i) & 1) * ((v >> j) & 1) * wa[i] * wb[j]
    return _wrap(total, fmt)


FMT_SAMPLE = [OperandFormat.parse(n) for n in ("u4xu4", "s4xs4", "u3xs5", "s5xu3", "s6xs6")]


# --- bit-level models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_exact_table_is_product_for_every_format(fmt: OperandFormat) -> None:
    assert np.array_equal(gen.exact(fmt).table, fmt.exact_table())


@pytest.mark.parametrize("fmt", FMT_SAMPLE, ids=str)
def test_truncation_perforation_bam_match_term_sums(fmt: OperandFormat) -> None:
    for k in (1, 3):
        assert np.array_equal(
            gen.truncated(fmt, k).table, _terms_reference(fmt, lambda i, j, k=k: i + j >= k)
        )
        d = gen.truncated(fmt, k, compensate=True)
        ref = _terms_reference(fmt, lambda i, j, k=k: i + j >= k, d.params["constant"])
        assert np.array_equal(d.table, ref)
    for rows in ((0,), (1, 2)):
        d = gen.perforated(fmt, rows)
        assert np.array_equal(d.table, _terms_reference(fmt, lambda i, j, r=rows: j not in r))
    for hbl, vbl in ((1, 2), (2, 4)):
        d = gen.broken_array(fmt, hbl, vbl)
        ref = _terms_reference(fmt, lambda i, j, h=hbl, v=vbl: j >= h and i + j >= v)
        assert np.array_equal(d.table, ref)


def test_truncation_compensation_reduces_bias() -> None:
    fmt = OperandFormat.parse("u6xu6")
    plain, comp = gen.truncated(fmt, 5), gen.truncated(fmt, 5, compensate=True)
    assert abs(comp.to_appmul().metrics().bias) < abs(plain.to_appmul().metrics().bias)


@pytest.mark.parametrize("fmt", FMT_SAMPLE, ids=str)
def test_operand_rounding_is_exact_product_of_rounded_codes(fmt: OperandFormat) -> None:
    u, v = np.meshgrid(fmt.a_codes(), fmt.w_codes(), indexing="ij")
    for ra, rb, mode in ((1, 0, "trunc"), (2, 1, "mid"), (0, 2, "mid")):
        ur, vr = (u >> ra) << ra, (v >> rb) << rb
        if mode == "mid":
            ur = ur + (1 << ra >> 1)
            vr = vr + (1 << rb >> 1)
        d = gen.operand_rounding(fmt, ra, rb, mode)
        assert np.array_equal(d.table, _wrap(ur * vr, fmt)), (ra, rb, mode)


def _kulkarni_reference(fmt: OperandFormat, level: int) -> np.ndarray:
    """Unsigned even widths: sum of 2x2 block products, 3 x 3 -> 7 in approximated tiles."""
    u, v = np.meshgrid(fmt.a_codes(), fmt.w_codes(), indexing="ij")
    total = np.zeros_like(u)
    for ti in range(fmt.a_bits // 2):
        for tj in range(fmt.w_bits // 2):
            x, y = (u >> 2 * ti) & 3, (v >> 2 * tj) & 3
            block = x * y
            if ti + tj < level:
                block = np.where(block == 9, 7, block)
            total += block << (2 * ti + 2 * tj)
    return total


@pytest.mark.parametrize("name", ["u2xu2", "u4xu4", "u6xu4"])
def test_recursive_matches_kulkarni_block_sum(name: str) -> None:
    fmt = OperandFormat.parse(name)
    for level in range(1, fmt.a_bits // 2 + fmt.w_bits // 2):
        assert np.array_equal(gen.recursive(fmt, level).table, _kulkarni_reference(fmt, level))


def test_approximate_cells_have_bounded_error_in_low_columns() -> None:
    fmt = OperandFormat.parse("u6xu6")
    for design in (
        gen.approx_adders(fmt, "ama2", 4),
        gen.approx_adders(fmt, "ama5", 4),
        gen.approx_compressors(fmt, 6),
    ):
        err = design.table - fmt.exact_table()
        assert err.any(), design.name
        # errors come from the low columns and their carries: far below the full product range
        assert np.abs(err).max() < 1 << 9, design.name


def test_sweep_names_unique_deterministic_and_families_present() -> None:
    fmt = OperandFormat.parse("s5xu4")
    first, second = gen.enumerate_designs(fmt), gen.enumerate_designs(fmt)
    assert [d.name for d in first] == [d.name for d in second]
    assert [d.verilog for d in first] == [d.verilog for d in second]
    assert len({d.name for d in first}) == len(first) >= 30
    assert first[0].family == "exact"
    families = {d.family for d in first}
    assert families == {"exact", "trunc", "bam", "perf", "approx_fa", "comp42", "recursive", "operand"}
    assert all(d.name.startswith("s5xu4_") for d in first)
    assert not any(np.array_equal(d.table, fmt.exact_table()) for d in first[1:])
    assert len(gen.enumerate_designs(OperandFormat.parse("u8xs8"))) >= 50


@pytest.mark.parametrize("name", ["u2xu2", "s2xs2", "u2xs2"])
def test_enumerate_2x2_is_deduplicated(name: str) -> None:
    fmt = OperandFormat.parse(name)
    designs = gen.enumerate_2x2(fmt)
    keys = {d.table.tobytes() for d in designs}
    assert len(keys) == len(designs) > 1000
    assert fmt.exact_table().tobytes() not in keys
    assert len({d.name for d in designs}) == len(designs)
    zero = next(d for d in designs if d.name == f"{name}_bits_0_0_0_0")
    assert not zero.table.any()


def test_structural_verilog_and_port_convention() -> None:
    fmt = OperandFormat.parse("s3xu4")
    for d in gen.enumerate_designs(fmt):
        assert re.search(r"\bcase\b|\balways\b|\*", d.verilog.split("\n", 1)[1]) is None, d.name
        assert f"module {d.top}(input [2:0] a, input [3:0] b, output [6:0] y);" in d.verilog


def test_invalid_parameters_raise() -> None:
    fmt = OperandFormat.parse("u4xu4")
    with pytest.raises(ValueError, match="k=0"):
        gen.truncated(fmt, 0)
    with pytest.raises(ValueError, match="rows"):
        gen.perforated(fmt, (4,))
    with pytest.raises(ValueError, match="ama9"):
        gen.approx_adders(fmt, "ama9", 2)
    with pytest.raises(ValueError, match="mode"):
        gen.operand_rounding(fmt, 1, 1, "floor")
    with pytest.raises(ValueError, match="2x2"):
        gen.enumerate_2x2(fmt)


# --- Verilog simulation --------------------------------------------------------------------------------


@needs_iverilog
@pytest.mark.parametrize("name", ["u2xu2", "s2xs2", "s3xs3", "u4xs4", "s4xu4", "u8xu8", "s8xs8"])
def test_exact_verilog_simulates_to_table(name: str) -> None:
    fmt = OperandFormat.parse(name)
    d = gen.exact(fmt)
    assert np.array_equal(simulate_table(d.verilog, d.top, fmt), d.table)


@needs_iverilog
@pytest.mark.parametrize("name", ["u3xs3", "s5xu4"])
def test_every_family_simulates_to_its_table(name: str) -> None:
    fmt = OperandFormat.parse(name)
    designs = gen.enumerate_designs(fmt)
    if name == "s5xu4":  # one per family (first and last parameter) keeps the test short
        by_family: dict[str, list] = {}
        for d in designs:
            by_family.setdefault(d.family, []).append(d)
        designs = [
            d
            for group in by_family.values()
            for d in {group[0].name: group[0], group[-1].name: group[-1]}.values()
        ]
    for d in designs:
        assert np.array_equal(simulate_table(d.verilog, d.top, fmt), d.table), d.name


@needs_iverilog
def test_8x8_signed_approximate_simulates_to_table() -> None:
    fmt = OperandFormat.parse("s8xs8")
    for d in (gen.approx_adders(fmt, "ama2", 6), gen.recursive(fmt, 3)):
        assert np.array_equal(simulate_table(d.verilog, d.top, fmt), d.table), d.name


@needs_iverilog
def test_2x2_variants_simulate_to_their_tables() -> None:
    for name in ("u2xu2", "s2xu2"):
        fmt = OperandFormat.parse(name)
        designs = gen.enumerate_2x2(fmt, use_pp=True)
        for d in designs[:: max(1, len(designs) // 12)]:
            assert np.array_equal(simulate_table(d.verilog, d.top, fmt), d.table), d.name


@pytest.mark.parametrize("name", ["u2xu2", "s2xs2", "u2xs8", "s8xu2", "s3xs7"])
def test_sweep_runs_on_edge_formats(name: str) -> None:
    fmt = OperandFormat.parse(name)
    designs = gen.enumerate_designs(fmt)
    assert len(designs) >= 15 and designs[0].name == f"{name}_exact"
    assert all(d.table.shape == fmt.shape for d in designs)
