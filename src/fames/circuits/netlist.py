"""Gate-level netlists (yosys' mapped output) as a DAG, and bit-parallel simulation with numpy.

Every net's value is a vector of uint64 words: bit ``i`` of the vector is the net's value on input
pattern ``i``, so one pass over the gates simulates all patterns at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from fames.circuits.liberty import CellType, _compile

CONST0, CONST1 = "1'b0", "1'b1"
ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class Gate:
    """One cell instance: `cell` drives `outputs[pin]` from `inputs[pin]` nets."""

    name: str
    cell: str
    inputs: dict[str, str]
    outputs: dict[str, str]


@dataclass
class Netlist:
    """A flat combinational netlist: ports are scalar nets; gates are in topological order.

    ``assigns`` maps a net to the net (or constant ``1'b0``/``1'b1``) it is a plain copy of.
    """

    top: str
    inputs: list[str]
    outputs: list[str]
    gates: list[Gate]
    assigns: dict[str, str] = field(default_factory=dict)
    cells: dict[str, CellType] = field(default_factory=dict, repr=False)

    def area(self) -> float:
        """Sum of the cell areas."""
        return float(sum(self.cells[g.cell].area for g in self.gates))

    def simulate(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Values of every net, given each input net's uint64 word vector (all the same length)."""
        n = len(next(iter(inputs.values())))
        values = {CONST0: np.zeros(n, np.uint64), CONST1: np.full(n, ONES, np.uint64)}
        values.update(inputs)
        for net in self.inputs:
            if net not in values:
                raise ValueError(f"no value given for input {net!r}")
        pending = dict(self.assigns)
        for gate in self.gates:
            _resolve(pending, values, gate.inputs.values())
            cell = self.cells[gate.cell]
            args = {f"v_{p}": values[net] for p, net in gate.inputs.items()}
            for pin, net in gate.outputs.items():
                values[net] = _compile(cell.functions[pin], cell.inputs)(**args)
        _resolve(pending, values, list(pending))
        return values


def _resolve(pending: dict[str, str], values: dict[str, np.ndarray], nets) -> None:
    for net in nets:
        chain = []
        while net not in values and net in pending:
            chain.append(net)
            net = pending[net]
        if net not in values:
            raise ValueError(f"net {net!r} is used but never driven")
        for c in chain:
            values[c] = values[net]


_TOKEN = re.compile(
    r"\\(\S+)|([A-Za-z_][A-Za-z0-9_$]*)|(\d+'[bB][01xXzZ]+)|(\[\s*\d+\s*(?::\s*\d+\s*)?\])|([(){};,.=])"
)


def _tokenize(text: str) -> list[str]:
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)
    toks = []
    for m in _TOKEN.finditer(text):
        esc, ident, const, sel, punct = m.groups()
        if sel is not None:
            toks.append(re.sub(r"\s", "", sel))
        else:
            toks.append(esc or ident or const or punct)
    return toks


def parse_netlist(text: str, cells: dict[str, CellType]) -> Netlist:
    """Parse yosys' ``write_verilog -noattr -noexpr`` output of a mapped design.

    Raises:
        ValueError: on an unknown cell or a construct outside the mapped-netlist subset.
    """
    toks = _tokenize(text)
    i = 0
    widths: dict[str, tuple[int, int]] = {}
    inputs, outputs, gates, assigns = [], [], [], {}
    top = ""

    def until(stop: str) -> list[str]:
        nonlocal i
        start = i
        while toks[i] != stop:
            i += 1
        i += 1
        return toks[start : i - 1]

    def bits(expr: list[str]) -> list[str]:
        """Expand a connection expression into scalar nets, MSB first."""
        if not expr:
            return []
        if expr[0] == "{":
            out, depth, cur = [], 0, []
            for t in expr[1:-1]:
                depth += {"{": 1, "}": -1}.get(t, 0)
                if t == "," and depth == 0:
                    out += bits(cur)
                    cur = []
                else:
                    cur.append(t)
            return out + bits(cur)
        head = expr[0]
        if "'" in head:
            return [CONST1 if c == "1" else CONST0 for c in head.split("'")[1][1:]]
        if len(expr) == 2 and expr[1].startswith("["):
            rng = [int(x) for x in expr[1][1:-1].split(":")]
            if len(rng) == 1:
                return [f"{head}[{rng[0]}]"]
            hi, lo = rng
            step = -1 if hi >= lo else 1
            return [f"{head}[{k}]" for k in range(hi, lo + step, step)]
        if head in widths:
            hi, lo = widths[head]
            step = -1 if hi >= lo else 1
            return [f"{head}[{k}]" for k in range(hi, lo + step, step)]
        return [head]

    def names(decl: list[str]) -> list[str]:
        rng = None
        if decl and decl[0].startswith("["):
            rng = tuple(int(x) for x in decl[0][1:-1].split(":"))
            decl = decl[1:]
        out = []
        for name in (t for t in decl if t != ","):
            if rng is not None:
                widths[name] = rng  # type: ignore[assignment]
            out += bits([name])
        return out

    while i < len(toks):
        tok = toks[i]
        i += 1
        if tok == "module":
            top = toks[i]
            until(";")
        elif tok in ("input", "output"):
            (inputs if tok == "input" else outputs).extend(names(until(";")))
        elif tok == "wire":
            names(until(";"))
        elif tok == "assign":
            stmt = until(";")
            eq = stmt.index("=")
            lhs, rhs = bits(stmt[:eq]), bits(stmt[eq + 1 :])
            if len(lhs) != len(rhs):
                raise ValueError(f"assign with mismatched widths: {' '.join(stmt)}")
            assigns.update(zip(lhs, rhs, strict=True))
        elif tok == "endmodule":
            break
        elif tok in cells:
            name = toks[i]
            stmt = until(";")
            pins = _pins(stmt[2:-1], bits)
            cell = cells[tok]
            gates.append(
                Gate(
                    name,
                    tok,
                    {p: pins[p] for p in cell.inputs},
                    {p: pins[p] for p in cell.functions if p in pins},
                )
            )
        else:
            raise ValueError(f"unsupported netlist construct or unknown cell {tok!r} (not in the liberty)")
    return Netlist(top, inputs, outputs, _toposort(gates, inputs, assigns), assigns, cells)


def _pins(stmt: list[str], bits) -> dict[str, str]:
    pins, j = {}, 0
    while j < len(stmt):
        if stmt[j] == ".":
            pin = stmt[j + 1]
            depth, k = 0, j + 2
            while True:
                depth += {"(": 1, ")": -1}.get(stmt[k], 0)
                if depth == 0:
                    break
                k += 1
            conn = bits(stmt[j + 3 : k])
            if len(conn) != 1:
                raise ValueError(f"pin {pin} is connected to {len(conn)} bits")
            pins[pin] = conn[0]
            j = k + 1
        else:
            j += 1
    return pins


def _toposort(gates: list[Gate], inputs: list[str], assigns: dict[str, str]) -> list[Gate]:
    driver = {net: g for g in gates for net in g.outputs.values()}
    order, state = [], {}

    def source(net: str) -> str:
        seen = set()
        while net in assigns and net not in driver:
            if net in seen:
                raise ValueError(f"combinational loop through assign of {net!r}")
            seen.add(net)
            net = assigns[net]
        return net

    for root in gates:
        if root.name in state:
            continue
        stack = [(root, iter(root.inputs.values()))]
        state[root.name] = 1
        while stack:
            gate, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[gate.name] = 2
                order.append(gate)
                continue
            dep = driver.get(source(nxt))
            if dep is None:
                continue
            if state.get(dep.name) == 1:
                raise ValueError(f"combinational loop through cell {dep.name!r}")
            if dep.name not in state:
                state[dep.name] = 1
                stack.append((dep, iter(dep.inputs.values())))
    return order
