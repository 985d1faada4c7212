"""The shipped built-in multiplier library: consistency, acceptance criterion, and a re-synthesis sample.

The sample test re-synthesises a deterministic sample of entries (one per format, two for 8x8) from their
stored Verilog with yosys/ABC and simulates each mapped netlist exhaustively with the bit-parallel
netlist simulator; the result must equal the entry's lookup table (the build checks every entry this
way; here a sample guards the shipped file against drift).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from fames.circuits.build import DEFAULT_FORMATS
from fames.multipliers.formats import OperandFormat
from fames.multipliers.library import builtin_library, builtin_library_path

# acceptance (issue 3): every square format 3x3..8x8 of both shipped signednesses
SQUARE = [f"{a}{b}xs{b}" for a in ("u", "s") for b in range(3, 9)]
MIN_PARETO = 12
MAX_LOW_SAVING = 10.0  # the front must start at <= 10 % saving ...
MIN_HIGH_SAVING = 60.0  # ... and reach >= 60 %


@pytest.fixture(scope="module")
def lib():
    if not builtin_library_path().is_file():
        pytest.skip("the built-in library is not built (run `fames lib build`)")
    return builtin_library()


def _out_range(fmt: OperandFormat) -> tuple[int, int]:
    p = fmt.a_bits + fmt.w_bits
    if fmt.a_signed or fmt.w_signed:
        return -(1 << (p - 1)), (1 << (p - 1)) - 1
    return 0, (1 << p) - 1


def test_every_shipped_format_has_a_characterised_exact(lib):
    assert sorted(f.name for f in lib.formats()) == sorted(DEFAULT_FORMATS)
    for fmt in lib.formats():
        ex = lib.exact(fmt)
        np.testing.assert_array_equal(ex.table, fmt.exact_table())
        assert ex.hardware is not None and ex.energy_pj > 0 and ex.hardware.area_um2 > 0


def test_every_table_is_consistent_with_its_format(lib):
    names = [m.name for m in lib]
    assert len(set(names)) == len(names)
    for m in lib:
        assert m.table.shape == m.fmt.shape, m.name
        assert m.table.dtype.kind == "i", m.name
        lo, hi = _out_range(m.fmt)
        assert lo <= int(m.table.min()) and int(m.table.max()) <= hi, m.name
        assert m.hardware is not None and m.energy_pj >= 0, m.name
        assert m.verilog and f"module {_top(m.verilog)}" in m.verilog, m.name


def _front(lib, name: str) -> tuple[list[float], float]:
    fmt = OperandFormat.parse(name)
    ex = lib.exact(fmt)
    approx = [m for m in lib.pareto(fmt, "mred") if not m.is_exact]
    return [100.0 * (1.0 - m.energy_pj / ex.energy_pj) for m in approx], ex.energy_pj


@pytest.mark.parametrize("name", SQUARE)
def test_acceptance_pareto_front_size_and_reach(lib, name):
    savings, _ = _front(lib, name)
    assert len(savings) >= MIN_PARETO, f"{name}: {len(savings)} Pareto-optimal approximate entries"
    assert max(savings) >= MIN_HIGH_SAVING, f"{name}: savings reach only {max(savings):.1f} %"


@pytest.mark.parametrize("name", SQUARE)
def test_acceptance_pareto_front_starts_near_exact(lib, name):
    savings, _ = _front(lib, name)
    assert min(savings) <= MAX_LOW_SAVING, f"{name}: the front starts at {min(savings):.1f} % saving"


def test_exact_energy_rises_with_operand_bits(lib):
    for sign in ("u", "s"):
        energies = [lib.exact(f"{sign}{b}xs{b}").energy_pj for b in range(2, 9)]
        assert energies == sorted(energies) and len(set(energies)) == len(energies), energies


def _top(verilog: str) -> str:
    match = re.search(r"\bmodule\s+([A-Za-z_][A-Za-z0-9_$]*)", verilog)
    assert match, "no module in the stored Verilog"
    return match.group(1)


def _sample(lib) -> list:
    """One approximate entry per format (the middle of its list), plus the exact 8x8 ones: deterministic."""
    picks = []
    for fmt in lib.formats():
        approx = [m for m in lib if m.fmt == fmt and not m.is_exact]
        if approx:
            picks.append(approx[len(approx) // 2])
        if fmt.a_bits == fmt.w_bits == 8 and fmt.a_signed:
            picks.append(lib.exact(fmt))
    return picks


@pytest.mark.eda
def test_sample_resynthesised_netlists_equal_their_tables(lib):
    from fames.circuits import bitsim
    from fames.circuits.liberty import load_cells
    from fames.circuits.netlist import parse_netlist
    from fames.circuits.synth import synthesize
    from fames.circuits.tools import find_liberty

    liberty = find_liberty()
    cells = load_cells(liberty)
    sample = _sample(lib)
    assert any(m.fmt.a_bits == m.fmt.w_bits == 8 for m in sample)
    for m in sample:
        netlist = parse_netlist(synthesize(m.verilog, _top(m.verilog), liberty=liberty), cells)
        table = bitsim.decode_table(bitsim.simulate_all(netlist, m.fmt), m.fmt)
        np.testing.assert_array_equal(table, m.table, err_msg=m.name)


@pytest.mark.eda
@pytest.mark.parametrize("name", ["u3xs3", "s4xs4", "u2xu2"])
def test_mulop_als_start_point_is_exact(name):
    from fames.circuits import bitsim
    from fames.circuits.build import mulop_base
    from fames.circuits.liberty import load_cells
    from fames.circuits.netlist import parse_netlist
    from fames.circuits.synth import synthesize
    from fames.circuits.tools import find_liberty

    fmt = OperandFormat.parse(name)
    base = mulop_base(fmt)
    liberty = find_liberty()
    netlist = parse_netlist(synthesize(base.verilog, base.top, liberty=liberty), load_cells(liberty))
    np.testing.assert_array_equal(bitsim.decode_table(bitsim.simulate_all(netlist, fmt), fmt), fmt.exact_table())


def test_saved_library_file_is_readable_package_data(lib, tmp_path):
    from fames.multipliers.library import save_library

    out = save_library(lib.filter("u3xs3"), tmp_path / "lib.npz")
    assert out.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_als_entries_preserve_zero_products(lib):
    """ALS rejects candidates with a non-zero product for a zero operand (checked on the table itself)."""
    als = [m for m in lib if m.family == "als"]
    assert als
    for m in als:
        a0, w0 = -m.fmt.a_range[0], -m.fmt.w_range[0]
        assert not m.table[a0, :].any() and not m.table[:, w0].any(), m.name
        assert m.zero_preserving
