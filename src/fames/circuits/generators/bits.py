"""Gate-level builder: every gate is evaluated bit-parallel over all code pairs and emitted as Verilog.

A `Builder` holds the operand bits of one operand format as boolean vectors over every (a, b) code
pair, so the Python model of a circuit and its structural Verilog come from the same gate calls.
Constants are folded (``x & 0 -> 0``), so dropping partial products simplifies the netlist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fames.multipliers.formats import OperandFormat


@dataclass(frozen=True, eq=False)
class Sig:
    """One signal: its Verilog expression name and its value for every code pair (bool vector)."""

    name: str
    val: np.ndarray

    @property
    def const(self) -> int | None:
        """0 or 1 for a constant signal, else None."""
        if self.name == "1'b0":
            return 0
        if self.name == "1'b1":
            return 1
        return None


class Builder:
    """Collects gates of one combinational module with ports ``a``, ``b`` and ``y`` (DESIGN.md 5)."""

    def __init__(self, fmt: OperandFormat) -> None:
        self.fmt = fmt
        ua = np.repeat(fmt.a_codes(), fmt.shape[1])
        vb = np.tile(fmt.w_codes(), fmt.shape[0])
        self.n = ua.size
        pa = ua & ((1 << fmt.a_bits) - 1)  # two's complement bit patterns
        pb = vb & ((1 << fmt.w_bits) - 1)
        self.a = [Sig(f"a[{i}]", ((pa >> i) & 1).astype(bool)) for i in range(fmt.a_bits)]
        self.b = [Sig(f"b[{j}]", ((pb >> j) & 1).astype(bool)) for j in range(fmt.w_bits)]
        self.zero = Sig("1'b0", np.zeros(self.n, dtype=bool))
        self.one = Sig("1'b1", np.ones(self.n, dtype=bool))
        self._lines: list[tuple[str, str, tuple[Sig, ...]]] = []  # (wire, expression, inputs)
        self._count = 0

    def const(self, bit: int) -> Sig:
        return self.one if bit else self.zero

    def _gate(self, expr: str, val: np.ndarray, inputs: tuple[Sig, ...]) -> Sig:
        self._count += 1
        name = f"n{self._count}"
        self._lines.append((name, expr, inputs))
        return Sig(name, val)

    def not_(self, x: Sig) -> Sig:
        if x.const is not None:
            return self.const(1 - x.const)
        return self._gate(f"~{x.name}", ~x.val, (x,))

    def and_(self, x: Sig, y: Sig) -> Sig:
        for p, q in ((x, y), (y, x)):
            if p.const == 0:
                return self.zero
            if p.const == 1:
                return q
        return self._gate(f"{x.name} & {y.name}", x.val & y.val, (x, y))

    def or_(self, x: Sig, y: Sig) -> Sig:
        for p, q in ((x, y), (y, x)):
            if p.const == 1:
                return self.one
            if p.const == 0:
                return q
        return self._gate(f"{x.name} | {y.name}", x.val | y.val, (x, y))

    def xor(self, x: Sig, y: Sig) -> Sig:
        for p, q in ((x, y), (y, x)):
            if p.const == 0:
                return q
            if p.const == 1:
                return self.not_(q)
        return self._gate(f"{x.name} ^ {y.name}", x.val ^ y.val, (x, y))

    def maj(self, x: Sig, y: Sig, z: Sig) -> Sig:
        return self.or_(self.and_(x, y), self.and_(z, self.or_(x, y)))

    def half_adder(self, x: Sig, y: Sig) -> tuple[Sig, Sig]:
        """(sum, carry) of two bits."""
        return self.xor(x, y), self.and_(x, y)

    def full_adder(self, x: Sig, y: Sig, z: Sig) -> tuple[Sig, Sig]:
        """(sum, carry) of three bits: sum = x^y^z, carry = xy | z(x^y)."""
        p = self.xor(x, y)
        return self.xor(p, z), self.or_(self.and_(x, y), self.and_(p, z))

    def table(self, outputs: list[Sig]) -> np.ndarray:
        """Table (|A|, |W|) of output bits `outputs` (LSB first); two's complement if an operand is signed."""
        width = len(outputs)
        raw = np.zeros(self.n, dtype=np.int64)
        for k, sig in enumerate(outputs):
            raw |= sig.val.astype(np.int64) << k
        if self.fmt.a_signed or self.fmt.w_signed:
            raw = np.where(raw >= (1 << (width - 1)), raw - (1 << width), raw)
        return raw.reshape(self.fmt.shape)

    def verilog(self, top: str, outputs: list[Sig], comment: str = "") -> str:
        """Structural Verilog of the gates that reach `outputs` (dead logic removed)."""
        live: set[str] = set()
        stack = [s for s in outputs]
        by_name = {w: (expr, ins) for w, expr, ins in self._lines}
        while stack:
            s = stack.pop()
            if s.name in by_name and s.name not in live:
                live.add(s.name)
                stack.extend(by_name[s.name][1])
        fmt = self.fmt
        head = [f"// {line}" for line in comment.splitlines()] if comment else []
        body = [
            f"module {top}(input [{fmt.a_bits - 1}:0] a, input [{fmt.w_bits - 1}:0] b, "
            f"output [{len(outputs) - 1}:0] y);"
        ]
        kept = [(w, e) for w, e, _ in self._lines if w in live]
        body += [f"  wire {w};" for w, _ in kept]
        body += [f"  assign {w} = {e};" for w, e in kept]
        body += [f"  assign y[{k}] = {s.name};" for k, s in enumerate(outputs)]
        body.append("endmodule")
        return "\n".join(head + body) + "\n"
