"""The approximate multiplier (AppMul): a total function on code pairs, stored as a lookup table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fames.multipliers.formats import OperandFormat


@dataclass(frozen=True)
class HardwareFigures:
    """Figures measured by the synthesis/power flow (DESIGN.md section 5).

    Args:
        area_um2: cell area after technology mapping, in square micrometres.
        delay_ns: critical-path delay, in nanoseconds.
        power_uw: total power at `clock_ns` and the stated input activity, in microwatts.
        energy_pj: energy per multiplication = power x clock period, in picojoules.
        clock_ns: clock period the power was measured at.
        activity: how switching activity was obtained (e.g. ``"sim:uniform:4096"``).
        cells: number of standard cells in the mapped netlist.
        liberty: name of the standard-cell library.
    """

    area_um2: float
    delay_ns: float
    power_uw: float
    energy_pj: float
    clock_ns: float
    activity: str = "sim:uniform"
    cells: int = 0
    liberty: str = "osu018"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareFigures:
        return cls(**data)


@dataclass(frozen=True, eq=False)
class AppMul:
    """An (approximate) multiplier of one operand format.

    Args:
        name: unique name inside a library, e.g. ``u4xs4_trunc_k3``.
        fmt: operand format.
        table: int64 lookup table of shape ``fmt.shape``; ``table[u - a_min, v - w_min]`` is the product.
        hardware: measured hardware figures, or None when not characterised.
        family: generator family (``exact``, ``truncation``, ``als`` ...).
        params: generator parameters, for provenance.
        verilog: structural Verilog of the circuit, when known.

    Example:
        >>> m = AppMul.exact(OperandFormat.parse("u2xs2"))
        >>> int(abs(m.error_table).max())
        0
    """

    name: str
    fmt: OperandFormat
    table: np.ndarray
    hardware: HardwareFigures | None = None
    family: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)
    verilog: str | None = None

    def __post_init__(self) -> None:
        table = np.asarray(self.table)
        if table.shape != self.fmt.shape:
            raise ValueError(
                f"multiplier {self.name!r}: table shape {table.shape} does not match format "
                f"{self.fmt.name} which needs {self.fmt.shape}"
            )
        if not np.issubdtype(table.dtype, np.integer):
            if not np.all(np.isfinite(table)) or not np.array_equal(table, np.round(table)):
                raise ValueError(
                    f"multiplier {self.name!r}: table must hold integers, got dtype {table.dtype}"
                )
        table = table.astype(np.int64)
        table.setflags(write=False)
        object.__setattr__(self, "table", table)

    @classmethod
    def exact(cls, fmt: OperandFormat, name: str | None = None, **kwargs: Any) -> AppMul:
        """The exact multiplier of `fmt`."""
        return cls(name or f"{fmt.name}_exact", fmt, fmt.exact_table(), family="exact", **kwargs)

    @property
    def error_table(self) -> np.ndarray:
        """``E = T - u v^T`` (int64)."""
        return self.table - self.fmt.exact_table()

    @property
    def is_exact(self) -> bool:
        return not np.any(self.error_table)

    @property
    def zero_preserving(self) -> bool:
        """True when ``0 x v = 0`` and ``u x 0 = 0`` hold (zero operands dominate in DNNs)."""
        a0, w0 = -self.fmt.a_range[0], -self.fmt.w_range[0]
        err = self.error_table
        return not (err[a0, :].any() or err[:, w0].any())

    @property
    def energy_pj(self) -> float:
        """Energy per multiplication; raises if the multiplier was never characterised."""
        if self.hardware is None:
            raise ValueError(f"multiplier {self.name!r} has no hardware figures (characterise it first)")
        return self.hardware.energy_pj

    def metrics(self, weights: np.ndarray | None = None):
        """Error metrics, optionally weighted by an operand distribution (see `fames.multipliers.metrics`)."""
        from fames.multipliers.metrics import error_metrics

        return error_metrics(self, weights)

    def with_hardware(self, hardware: HardwareFigures) -> AppMul:
        return replace(self, hardware=hardware)

    def __repr__(self) -> str:
        energy = "uncharacterised" if self.hardware is None else f"{self.hardware.energy_pj:.4g} pJ"
        return f"AppMul({self.name!r}, {self.fmt.name}, {self.family}, {energy})"
