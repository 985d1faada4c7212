import json

import pytest

from fames.cli.main import main
from fames.multipliers.appmul import AppMul, HardwareFigures
from fames.multipliers.formats import OperandFormat
from fames.multipliers.library import Library, save_library


@pytest.fixture
def libfile(tmp_path):
    fmt = OperandFormat.parse("u2xs2")
    hw = HardwareFigures(200.0, 0.2, 40.0, 0.4, 10.0)
    t = fmt.exact_table().copy()
    t[3, 0] = -4
    lib = Library(
        [
            AppMul.exact(fmt, hardware=hw, verilog="module x; endmodule\n"),
            AppMul("u2xs2_cheap", fmt, t, HardwareFigures(100.0, 0.1, 20.0, 0.2, 10.0), "trunc"),
        ]
    )
    return str(save_library(lib, tmp_path / "lib.npz"))


def test_list_show_export_plot(libfile, tmp_path, capsys):
    assert main(["lib", "list", "--library", libfile, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["u2xs2_exact", "u2xs2_cheap"]
    assert main(["lib", "list", "--library", libfile, "--format", "u4xs4"]) == 0
    assert "u2xs2" not in capsys.readouterr().out
    assert main(["lib", "show", "u2xs2_cheap", "--library", libfile, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["table"][3][0] == -4 and len(shown["table"]) == 4
    out = tmp_path / "x.v"
    assert main(["lib", "export-verilog", "u2xs2_exact", "-o", str(out), "--library", libfile]) == 0
    assert out.read_text().startswith("module x")
    png = tmp_path / "f.png"
    assert main(["lib", "plot", "-o", str(png), "--library", libfile]) == 0
    assert png.stat().st_size > 1000


def test_usage_errors(libfile, capsys):
    assert main(["lib", "show", "nope", "--library", libfile]) == 2
    assert main(["lib", "list", "--format", "q9", "--library", libfile]) == 2
    assert main(["lib", "export-verilog", "u2xs2_cheap", "-o", "/tmp/x.v", "--library", libfile]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "nope" in err
