"""The `Design` record every generator returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fames.circuits.generators.bits import Builder, Sig
from fames.multipliers.appmul import AppMul, HardwareFigures
from fames.multipliers.formats import OperandFormat


@dataclass(frozen=True, eq=False)
class Design:
    """A generated multiplier circuit.

    Args:
        name: unique, deterministic name, e.g. ``s4xs4_trunc_k2_comp``; also the Verilog module name.
        fmt: operand format.
        family: generator family (``exact``, ``trunc``, ``bam``, ``perf``, ``approx_fa``, ``comp42``,
            ``recursive``, ``operand``, ``bits2x2``).
        params: generator parameters.
        verilog: structural Verilog, ports ``a [BA-1:0]``, ``b [BW-1:0]``, ``y [BA+BW-1:0]``.
        top: module name.
        table: the function the circuit computes (from the bit-level Python model, not from Verilog).
    """

    name: str
    fmt: OperandFormat
    family: str
    params: dict[str, Any]
    verilog: str
    top: str
    table: np.ndarray = field(repr=False)

    def to_appmul(self, hardware: HardwareFigures | None = None) -> AppMul:
        """Library entry of this design (family ``exact`` only when the table is exact)."""
        return AppMul(self.name, self.fmt, self.table, hardware, self.family, dict(self.params), self.verilog)


def finish(bld: Builder, family: str, suffix: str, params: dict[str, Any], outputs: list[Sig]) -> Design:
    """Wrap the builder's outputs into a Design named ``<fmt>_<suffix>``."""
    name = f"{bld.fmt.name}_{suffix}"
    comment = f"fames generator: family={family} params={params}"
    return Design(
        name=name,
        fmt=bld.fmt,
        family=family,
        params=dict(params),
        verilog=bld.verilog(name, outputs, comment),
        top=name,
        table=bld.table(outputs),
    )
