import numpy as np
import pytest
from structural import array_multiplier

from fames.circuits.importers import find_top, import_multiplier
from fames.multipliers.formats import OperandFormat

pytestmark = pytest.mark.eda

BLIF_2X2 = """.model mul2
.inputs a[0] a[1] b[0] b[1]
.outputs y[0] y[1] y[2] y[3]
.names a[0] b[0] y[0]
11 1
.names a[1] b[0] p1
11 1
.names a[0] b[1] p2
11 1
.names a[1] b[1] p3
11 1
.names p1 p2 y[1]
10 1
01 1
.names p1 p2 c1
11 1
.names p3 c1 y[2]
10 1
01 1
.names p3 c1 y[3]
11 1
.end
"""


def test_import_verilog_with_submodule(tmp_path):
    src = array_multiplier(3, 3, "inner") + (
        "module wrap(input [2:0] a, input [2:0] b, output [5:0] y);\n"
        "  inner u0 (.a(a), .b(b), .y(y));\nendmodule\n"
    )
    assert find_top(src) == "wrap"
    path = tmp_path / "m.v"
    path.write_text(src)
    m = import_multiplier(path, "u3xu3", name="mine")
    assert m.name == "mine" and m.family == "imported" and m.is_exact and m.hardware.area_um2 > 0


def test_import_blif(tmp_path):
    path = tmp_path / "m.blif"
    path.write_text(BLIF_2X2)
    m = import_multiplier(path, OperandFormat.parse("u2xu2"))
    assert m.name == "mul2" and m.is_exact and m.hardware.energy_pj > 0


def test_import_lut_warns_and_matches(tmp_path):
    fmt = OperandFormat.parse("u2xs2")
    table = fmt.exact_table().copy()
    table[1, 0] = -1  # approximate entry
    np.save(tmp_path / "t.npy", table)
    with pytest.warns(UserWarning, match="3-40x larger"):
        m = import_multiplier(tmp_path / "t.npy", fmt)
    np.testing.assert_array_equal(m.table, table)


def test_import_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        import_multiplier(tmp_path / "none.v", "u2xu2")
    (tmp_path / "x.txt2").write_text("")
    with pytest.raises(ValueError, match="unsupported"):
        import_multiplier(tmp_path / "x.txt2", "u2xu2")
