"""Verilog -> yosys synthesis -> ABC mapping onto the liberty -> flat gate-level netlist OpenSTA can read."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fames.circuits.tools import find_liberty, find_tool, run_tool

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def yosys_script(src: str, top: str, liberty: Path, out: str, frontend: str = "verilog") -> str:
    """The synthesis script (DESIGN.md section 8 explains the clean-up passes OpenSTA needs)."""
    lib = str(liberty)
    return "\n".join(
        [
            f"read_verilog {src}" if frontend == "verilog" else f"read_blif -wideports {src}",
            f"hierarchy -check -top {top}",
            f"synth -flatten -top {top}",
            f"dfflibmap -liberty {lib}",
            f"abc -liberty {lib}",
            "opt_clean -purge",
            "splitnets -ports",
            "opt_clean -purge",
            f"write_verilog -noattr -noexpr -nohex -nodec {out}",
            "",
        ]
    )


def _error_line(text: str) -> str:
    for line in text.splitlines():
        if "ERROR" in line:
            return line.strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def synthesize(
    verilog: str, top: str, *, liberty: Path | None = None, timeout: float = 600.0, frontend: str = "verilog"
) -> str:
    """Synthesise `verilog` (module `top`) and map it onto the standard cells.

    Args:
        frontend: ``"verilog"`` or ``"blif"`` (then `verilog` holds BLIF text).

    Returns:
        The mapped, flattened gate-level netlist (Verilog text, one scalar port per bit).

    Raises:
        ValueError: when yosys rejects the Verilog (with yosys' error line) or `top` is not a valid name.
        RuntimeError / FileNotFoundError: when yosys or the liberty is missing.
    """
    if not _IDENT.match(top):
        raise ValueError(f"top module name {top!r} is not a plain Verilog identifier")
    yosys = find_tool("yosys")
    find_tool("yosys-abc")
    lib = liberty or find_liberty()
    with tempfile.TemporaryDirectory(prefix="fames-synth-") as tmp:
        src = "design.v" if frontend == "verilog" else "design.blif"
        Path(tmp, src).write_text(verilog)
        Path(tmp, "synth.ys").write_text(yosys_script(src, top, lib, "mapped.v", frontend))
        res = run_tool([yosys, "-q", "-s", "synth.ys"], cwd=Path(tmp), timeout=timeout)
        out = Path(tmp, "mapped.v")
        if res.returncode != 0 or not out.is_file():
            raise ValueError(
                f"yosys could not synthesise module {top!r}: {_error_line(res.stderr + res.stdout)}"
            )
        return out.read_text()
