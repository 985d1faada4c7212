"""Exhaustive simulation of a multiplier module with Icarus Verilog (``iverilog`` + ``vvp``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from fames.multipliers.formats import OperandFormat


def iverilog_available() -> bool:
    """Whether both ``iverilog`` and ``vvp`` are on PATH."""
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def _testbench(top: str, fmt: OperandFormat) -> str:
    ba, bw = fmt.a_bits, fmt.w_bits
    return f"""`timescale 1ns/1ps
module tb;
  reg [{ba - 1}:0] a; reg [{bw - 1}:0] b; wire [{ba + bw - 1}:0] y;
  integer i, j;
  {top} dut(.a(a), .b(b), .y(y));
  initial begin
    for (i = 0; i < {1 << ba}; i = i + 1) begin
      for (j = 0; j < {1 << bw}; j = j + 1) begin
        a = i; b = j; #1; $display("%0d %0d %0d", a, b, y);
      end
    end
    $finish;
  end
endmodule
"""


def simulate_table(verilog: str, top: str, fmt: OperandFormat, timeout_s: float = 120.0) -> np.ndarray:
    """Simulate `top` for every (a, b) code pair and return its table (|A|, |W|) as int64.

    Ports follow the generator convention (``a``, ``b``, ``y`` of width BA+BW, two's complement output
    when either operand is signed).

    Raises:
        RuntimeError: when iverilog is missing, compilation fails or the output is incomplete.
    """
    if not iverilog_available():
        raise RuntimeError("iverilog/vvp not found on PATH (Debian package 'iverilog')")
    width = fmt.a_bits + fmt.w_bits
    with tempfile.TemporaryDirectory(prefix="fames_iv_") as tmp:
        src, tb, exe = Path(tmp, "dut.v"), Path(tmp, "tb.v"), Path(tmp, "sim.vvp")
        src.write_text(verilog)
        tb.write_text(_testbench(top, fmt))
        comp = subprocess.run(
            ["iverilog", "-g2005", "-o", str(exe), str(tb), str(src)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if comp.returncode != 0:
            raise RuntimeError(f"iverilog failed for {top}: {comp.stderr.strip()[:2000]}")
        run = subprocess.run(["vvp", "-n", str(exe)], capture_output=True, text=True, timeout=timeout_s)
    rows = [line.split() for line in run.stdout.splitlines() if line[:1].isdigit()]
    data = np.array([[int(x) for x in r] for r in rows if len(r) == 3], dtype=np.int64).reshape(-1, 3)
    if data.shape[0] != fmt.shape[0] * fmt.shape[1]:
        raise RuntimeError(
            f"simulation of {top} returned {data.shape[0]} of {fmt.shape[0] * fmt.shape[1]} rows"
        )
    a_pat, b_pat, y = data.T
    a_min, w_min = fmt.a_range[0], fmt.w_range[0]
    ua = _to_code(a_pat, fmt.a_bits, fmt.a_signed) - a_min
    vb = _to_code(b_pat, fmt.w_bits, fmt.w_signed) - w_min
    table = np.zeros(fmt.shape, dtype=np.int64)
    table[ua, vb] = _to_code(y, width, fmt.a_signed or fmt.w_signed)
    return table


def _to_code(pattern: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    if not signed:
        return pattern
    return np.where(pattern >= 1 << (bits - 1), pattern - (1 << bits), pattern)
