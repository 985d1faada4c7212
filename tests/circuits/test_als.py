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
