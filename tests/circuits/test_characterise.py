import numpy as np
import pytest
from structural import array_multiplier

from fames.circuits import characterise as ch
from fames.multipliers.formats import OperandFormat

pytestmark = pytest.mark.eda


@pytest.mark.parametrize("n", [2, 3])
def test_flow_on_small_array_multiplier(n):
    fmt = OperandFormat.parse(f"u{n}xu{n}")
    hw, table, mapped = ch.characterise(
        array_multiplier(n, n, f"arr{n}"), f"arr{n}", fmt, expected_table=fmt.exact_table()
    )
    np.testing.assert_array_equal(table, fmt.exact_table())
    assert hw.area_um2 > 0 and hw.delay_ns > 0 and hw.power_uw > 0 and hw.cells > 0
    assert hw.energy_pj == pytest.approx(hw.power_uw * hw.clock_ns * 1e-3)
    assert hw.clock_ns == ch.CLOCK_NS and hw.activity.startswith("sim:uniform")
    assert "endmodule" in mapped


def test_wrong_expected_table_raises():
    fmt = OperandFormat.parse("u2xu2")
    wrong = fmt.exact_table().copy()
    wrong[3, 3] = 8
    with pytest.raises(ch.CharacterisationError, match="row 3, column 3"):
        ch.characterise(array_multiplier(2, 2, "arr2"), "arr2", fmt, expected_table=wrong)


def test_cache_hit_runs_no_tool(monkeypatch):
    fmt = OperandFormat.parse("u3xu3")
    v = array_multiplier(3, 3, "arr3c")
    first = ch.characterise(v, "arr3c", fmt)

    def boom(*a, **k):
        raise AssertionError("tools ran on a cache hit")

    monkeypatch.setattr(ch, "synthesize", boom)
    monkeypatch.setattr(ch, "run_sta", boom)
    second = ch.characterise(v, "arr3c", fmt, expected_table=fmt.exact_table())
    assert second[0] == first[0] and second[2] == first[2]
    np.testing.assert_array_equal(second[1], first[1])
    assert not list((ch._cache_dir()).glob("*.tmp"))
    with pytest.raises(ch.CharacterisationError):  # the cached table is still verified
        ch.characterise(v, "arr3c", fmt, expected_table=np.zeros(fmt.shape, np.int64))


def test_activity_distribution_changes_power():
    fmt = OperandFormat.parse("u2xu2")
    v = array_multiplier(2, 2, "arr2d")
    uniform, _, _ = ch.characterise(v, "arr2d", fmt)
    w = np.zeros(fmt.shape)
    w[0, :] = 1.0  # activation always 0: the products never toggle
    quiet, _, _ = ch.characterise(v, "arr2d", fmt, activity=w)
    assert quiet.power_uw < 0.5 * uniform.power_uw
    assert quiet.activity.startswith("sim:dist-")


def test_malformed_verilog_is_value_error():
    fmt = OperandFormat.parse("u2xu2")
    with pytest.raises(ValueError, match="syntax error"):
        ch.characterise(
            "module m(input [1:0] a, input [1:0] b, output [3:0] y); assign y = a *; endmodule", "m", fmt
        )
    with pytest.raises(ValueError, match="ports"):
        ch.characterise("module m(input [1:0] a, output [3:0] y); assign y = a; endmodule", "m", fmt)
