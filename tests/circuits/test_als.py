import numpy as np
import pytest
from structural import array_multiplier

from fames.circuits.als import als_variants
from fames.circuits.characterise import characterise
from fames.multipliers.formats import OperandFormat

pytestmark = pytest.mark.eda


def test_als_variants_are_cheaper_and_verified():
    fmt = OperandFormat.parse("u3xu3")
    base = array_multiplier(3, 3, "arr3")
    variants = als_variants(base, "arr3", fmt, n_max=4, seed=0, max_steps=25)
    assert 1 <= len(variants) <= 4
    exact_hw, _, _ = characterise(base, "arr3", fmt)
    mreds = [p["mred"] for _, _, _, p in variants]
    assert mreds == sorted(mreds) and mreds[0] > 0
    for verilog, top, table, _ in variants:
        assert table.shape == fmt.shape and not np.array_equal(table, fmt.exact_table())
        hw, sim, _ = characterise(verilog, top, fmt, expected_table=table)  # raises unless equal
        assert hw.area_um2 < exact_hw.area_um2


def test_als_output_matches_iverilog():
    from fames.circuits.iverilog_sim import iverilog_available, simulate_table

    if not iverilog_available():
        pytest.skip("iverilog missing")
    fmt = OperandFormat.parse("s3xs2")
    v = (
        "module m(input [2:0] a, input [1:0] b, output [4:0] y);"
        " assign y = $signed(a) * $signed(b); endmodule"
    )
    for verilog, top, table, _ in als_variants(v, "m", fmt, n_max=2, max_steps=10):
        np.testing.assert_array_equal(simulate_table(verilog, top, fmt), table)


def test_als_is_deterministic():
    fmt = OperandFormat.parse("u2xu2")
    v = array_multiplier(2, 2, "arr2")
    a = als_variants(v, "arr2", fmt, seed=3)
    b = als_variants(v, "arr2", fmt, seed=3)
    assert [x[0] for x in a] == [x[0] for x in b]


def test_resub_search_small_errors_keep_zero_products():
    from fames.circuits.als import resub_search
    from fames.circuits.liberty import load_cells
    from fames.circuits.netlist import parse_netlist
    from fames.circuits.synth import synthesize
    from fames.circuits.tools import find_liberty

    fmt = OperandFormat.parse("u3xs3")
    liberty = find_liberty()
    netlist = parse_netlist(synthesize(_signed_mul_u3xs3(), "m", liberty=liberty), load_cells(liberty))
    points = resub_search(netlist, fmt, max_mred=0.03)
    assert points
    keys = [(p.mred, p.area, p.net, p.cell or "", p.args) for p in points]
    assert keys == sorted(keys)
    exact = fmt.exact_table()
    a0, w0 = -fmt.a_range[0], -fmt.w_range[0]
    for p in points:
        assert 0 < p.mred <= 0.03
        assert not p.table[a0, :].any() and not p.table[:, w0].any()
        assert p.area <= netlist.area()
        err = np.abs(p.table - exact)[exact != 0] / np.abs(exact[exact != 0])
        assert p.mred == pytest.approx(err.mean())


def test_resub_variants_verified_and_deterministic():
    from fames.circuits.als import resub_variants

    fmt = OperandFormat.parse("u3xs3")
    v = _signed_mul_u3xs3()
    variants = resub_variants(v, "m", fmt, n_max=4)
    assert 1 <= len(variants) <= 4
    assert [x[0] for x in variants] == [x[0] for x in resub_variants(v, "m", fmt, n_max=4)]
    for verilog, top, table, params in variants:
        assert params["mred"] <= 0.03 and not np.array_equal(table, fmt.exact_table())
        characterise(verilog, top, fmt, expected_table=table)  # raises unless the circuit equals its table


def _signed_mul_u3xs3() -> str:
    return (
        "module m(input [2:0] a, input [2:0] b, output [5:0] y);"
        " assign y = $signed({1'b0, a}) * $signed(b); endmodule"
    )


def test_resub_chain_lowers_energy_step_by_step():
    from fames.circuits.als import resub_chain
    from fames.circuits.build import candidate_designs

    fmt = OperandFormat.parse("u4xs3")
    exact = candidate_designs(fmt)[0]
    steps = resub_chain(exact.verilog, exact.top, fmt, steps=3, max_mred=0.02)
    assert steps
    energy = characterise(exact.verilog, exact.top, fmt)[0].energy_pj
    a0, w0 = -fmt.a_range[0], -fmt.w_range[0]
    for k, (verilog, top, table, params) in enumerate(steps):
        assert top == f"{exact.top}_rc{k}" and len(params["resub_chain"]) == k + 1
        assert 0 < params["mred"] <= 0.02 and not table[a0, :].any() and not table[:, w0].any()
        hw = characterise(verilog, top, fmt, expected_table=table)[0]  # raises unless equal
        assert hw.energy_pj < energy
        energy = hw.energy_pj
