"""Import a user's multiplier (structural/behavioural Verilog, BLIF, or a LUT) as a characterised AppMul."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from fames.circuits.characterise import CLOCK_NS, characterise
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat

LUT_WARNING = (
    "a truth-table circuit synthesises 3-40x larger than a structural one (DESIGN.md section 8): "
    "its area/energy overstate a real implementation; import structural Verilog when you have it"
)


def find_top(verilog: str) -> str:
    """The top module: the only module, or the only one no other module instantiates.

    Raises:
        ValueError: when there is no module or the top is ambiguous.
    """
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", verilog, flags=re.S)
    names = re.findall(r"\bmodule\s+([A-Za-z_][A-Za-z0-9_$]*)", text)
    if not names:
        raise ValueError("no `module` found in the Verilog")
    used = {
        n for n in names if re.search(rf"^\s*{re.escape(n)}\s+(#\s*\(.*?\)\s*)?\w+\s*\(", text, re.M | re.S)
    }
    tops = [n for n in names if n not in used]
    if len(tops) != 1:
        raise ValueError(f"cannot tell the top module among {', '.join(names)}: name it explicitly")
    return tops[0]


def lut_verilog(table: np.ndarray, fmt: OperandFormat, top: str) -> str:
    """A ``case`` statement computing `table` (ports a, b, y as every fames design)."""
    p = fmt.a_bits + fmt.w_bits
    lines = [
        f"module {top}(input [{fmt.a_bits - 1}:0] a, input [{fmt.w_bits - 1}:0] b,",
        f"  output reg [{p - 1}:0] y);",
        "  always @(*) begin",
        "    case ({b, a})",
    ]
    for r, u in enumerate(fmt.a_codes()):
        for c, v in enumerate(fmt.w_codes()):
            key = ((int(v) & ((1 << fmt.w_bits) - 1)) << fmt.a_bits) | (int(u) & ((1 << fmt.a_bits) - 1))
            val = int(table[r, c]) & ((1 << p) - 1)
            lines.append(f"      {p}'d{key}: y = {p}'d{val};")
    lines += [f"      default: y = {p}'d0;", "    endcase", "  end", "endmodule", ""]
    return "\n".join(lines)


def _check_range(table: np.ndarray, fmt: OperandFormat) -> None:
    p = fmt.a_bits + fmt.w_bits
    lo, hi = (-(1 << (p - 1)), (1 << (p - 1)) - 1) if fmt.a_signed or fmt.w_signed else (0, (1 << p) - 1)
    if table.min() < lo or table.max() > hi:
        raise ValueError(f"LUT values must fit the {p}-bit output of format {fmt.name} ({lo}..{hi})")


def import_multiplier(
    path: str | Path,
    fmt: OperandFormat | str,
    *,
    name: str | None = None,
    top: str | None = None,
    clock_ns: float = CLOCK_NS,
) -> AppMul:
    """Characterise the multiplier in `path` (``.v``/``.sv``, ``.blif``, ``.csv``/``.npy`` LUT).

    Raises:
        ValueError: unknown file type, bad Verilog/BLIF, wrong ports, LUT of the wrong shape.
        FileNotFoundError: when `path` does not exist.
    """
    path = Path(path)
    fmt = fmt if isinstance(fmt, OperandFormat) else OperandFormat.parse(fmt)
    if not path.is_file():
        raise FileNotFoundError(f"multiplier file {path} does not exist")
    suffix = path.suffix.lower()
    expected = None
    frontend = "verilog"
    if suffix in (".v", ".sv", ".verilog"):
        source = path.read_text()
        top = top or find_top(source)
    elif suffix == ".blif":
        source = path.read_text()
        models = re.findall(r"(?m)^\s*\.model\s+(\S+)", source)
        if not models:
            raise ValueError(f"{path}: no .model in the BLIF file")
        top, frontend = top or models[0], "blif"
    elif suffix in (".csv", ".npy", ".txt"):
        from fames.multipliers.lut_io import read_lut

        expected = read_lut(path, fmt)
        _check_range(expected, fmt)
        warnings.warn(LUT_WARNING, stacklevel=2)
        top = top or re.sub(r"\W", "_", name or f"{fmt.name}_{path.stem}")
        source = lut_verilog(expected, fmt, top)
    else:
        raise ValueError(f"unsupported multiplier file {path.name!r}: use .v/.sv, .blif, .csv or .npy")
    hw, table, _ = characterise(
        source, top, fmt, clock_ns=clock_ns, expected_table=expected, frontend=frontend
    )
    params = {"source": path.name, "kind": "lut" if expected is not None else frontend}
    return AppMul(name or top, fmt, table, hw, "imported", params, source if frontend == "verilog" else None)
