"""Approximate logic synthesis (ALS) on a mapped gate netlist.

Greedy search: each step replaces one internal net by constant 0/1 or by a similar net that is not in
its fan-out (so no cycle), choosing the change with the least error increase per unit of area saved.
Error is measured by exhaustive bit-parallel simulation (no tools); the cost proxy is the area of the
cells still in the cone of the outputs once constant nets are propagated. The Pareto set of
(area proxy, MRED) is written back as gate-level Verilog, to be characterised like any design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fames.circuits import bitsim
from fames.circuits.liberty import load_cells, to_verilog
from fames.circuits.netlist import CONST0, CONST1, ONES, Gate, Netlist, parse_netlist
from fames.circuits.synth import synthesize
from fames.circuits.tools import find_liberty
from fames.multipliers.formats import OperandFormat


@dataclass(frozen=True)
class AlsPoint:
    """One netlist of the search: its substitutions, table, area proxy and errors."""

    subst: tuple[tuple[str, str], ...]
    table: np.ndarray
    area: float
    mred: float
    med: float


class _Search:
    """Bit-parallel evaluation of the netlist under a substitution map ``net -> replacement``."""

    def __init__(self, netlist: Netlist, fmt: OperandFormat):
        self.nl, self.fmt = netlist, fmt
        self.inputs = bitsim.input_words(fmt)
        self.outputs = bitsim.output_nets(fmt)
        self.n = bitsim.n_patterns(fmt)
        self.exact = fmt.exact_table()
        self.nz = self.exact != 0
        self.inv = 1.0 / np.abs(np.where(self.nz, self.exact, 1))
        self.driver = {net: g for g in netlist.gates for net in g.outputs.values()}
        self.alias = dict(netlist.assigns)
        self.consts = _consts(self.inputs)

    def src(self, net: str, subst: dict[str, str]) -> str:
        for _ in range(len(subst) + len(self.alias) + 1):
            if net in subst:
                net = subst[net]
            elif net in self.alias:
                net = self.alias[net]
            else:
                return net
        raise ValueError(f"substitution loop at {net!r}")

    def graph(self, subst: dict[str, str]) -> tuple[list[int], dict[str, list[int]]]:
        """Topological gate order and net -> reader gates, with `subst` applied."""
        gates = self.nl.gates
        readers: dict[str, list[int]] = {}
        for k, g in enumerate(gates):
            for net in g.inputs.values():
                readers.setdefault(self.src(net, subst), []).append(k)
        index = {net: k for k, g in enumerate(gates) for net in g.outputs.values()}
        order, state = [], [0] * len(gates)
        for root in range(len(gates)):
            if state[root]:
                continue
            stack = [(root, iter(gates[root].inputs.values()))]
            state[root] = 1
            while stack:
                k, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    state[k] = 2
                    order.append(k)
                    continue
                dep = index.get(self.src(nxt, subst))
                if dep is not None and state[dep] == 0:
                    state[dep] = 1
                    stack.append((dep, iter(gates[dep].inputs.values())))
                elif dep is not None and state[dep] == 1:
                    raise ValueError("substitution created a combinational loop")
        return order, readers

    def fanout(self, net: str, readers: dict[str, list[int]], rank: dict[int, int]) -> list[int]:
        """Gates in the transitive fan-out of `net`, in topological order."""
        seen, stack = set(), [net]
        while stack:
            for k in readers.get(stack.pop(), []):
                if k not in seen:
                    seen.add(k)
                    stack.extend(self.nl.gates[k].outputs.values())
        return sorted(seen, key=rank.__getitem__)

    def simulate(self, subst: dict[str, str], order: list[int], base: dict | None = None) -> dict:
        """Net values with `subst` applied, evaluating the gates of `order` (on top of `base`)."""
        values = dict(base) if base is not None else {**self.inputs, **self.consts}
        for k in order:
            g = self.nl.gates[k]
            cell = self.nl.cells[g.cell]
            args = {f"v_{p}": values[self.src(n, subst)] for p, n in g.inputs.items()}
            for pin, net in g.outputs.items():
                values[net] = cell.evaluator(pin)(**args)
        for net in self.outputs:
            values[net] = (
                values[self.src(net, subst)] if net in subst or net not in self.driver else values[net]
            )
        return values

    def breaks_zero(self, table: np.ndarray) -> bool:
        """True when a zero operand no longer gives a zero product (row u=0 or column v=0 changed)."""
        a0, w0 = -self.fmt.a_range[0], -self.fmt.w_range[0]
        return bool(np.any(table[a0, :] != self.exact[a0, :]) or np.any(table[:, w0] != self.exact[:, w0]))

    def score(self, values: dict) -> tuple[np.ndarray, float, float]:
        table = bitsim.decode_table(values, self.fmt)
        err = np.abs(table - self.exact)
        return table, float((err * self.inv)[self.nz].mean()), float(err.mean())

    def live(self, values: dict, subst: dict[str, str]) -> tuple[float, list[str]]:
        """Area proxy and the non-constant gate-output nets in the cone of the outputs."""
        area, nets, seen = 0.0, [], set()
        stack = [self.src(n, subst) for n in self.outputs]
        while stack:
            net = self.src(stack.pop(), subst)
            g = self.driver.get(net)
            if g is None or g.name in seen or _is_const(values[net]):
                continue
            seen.add(g.name)
            area += self.nl.cells[g.cell].area
            nets.extend(n for n in g.outputs.values() if n not in subst and not _is_const(values[n]))
            stack.extend(g.inputs.values())
        return area, nets


def _consts(inputs: dict) -> dict:
    n = len(next(iter(inputs.values())))
    return {CONST0: np.zeros(n, np.uint64), CONST1: np.full(n, ONES, np.uint64)}


def _is_const(words: np.ndarray) -> bool:
    return bool(np.all(words == 0) or np.all(words == ONES))


def search(
    netlist: Netlist,
    fmt: OperandFormat,
    *,
    max_steps: int = 60,
    max_mred: float = 0.5,
    max_candidates: int = 300,
    similar: int = 2,
    seed: int = 0,
    keep_candidates: bool = False,
    zero_preserving: bool = True,
) -> list[AlsPoint]:
    """Greedy ALS from `netlist`; every accepted step is returned (the first point is the input).

    With `zero_preserving` (default) a candidate that makes ``0 x v`` or ``u x 0`` non-zero is rejected:
    zero operands dominate in DNNs (ReLU outputs, padding, pruned weights), and a non-zero product there
    adds an offset to every output proportional to its count of zero taps. MRED cannot see it (it skips
    zero exact products): in a trial, every such u4xs2 variant with MRED 0.02-0.2 took a 2-bit LeNet layer
    from 90.9 % to chance level.

    With `keep_candidates`, every evaluated candidate that saves area within `max_mred` is returned too
    (after the accepted steps): one substitution on top of an accepted step. Their Pareto set is much
    denser than the greedy sequence alone, notably near the exact design (small savings), which small
    formats need. Meant for small formats (the tables of all candidates are kept in memory).
    """
    rng = np.random.default_rng(seed)
    s = _Search(netlist, fmt)
    subst: dict[str, str] = {}
    order, readers = s.graph(subst)
    values = s.simulate(subst, order)
    table, mred, med = s.score(values)
    area, nets = s.live(values, subst)
    points = [AlsPoint((), table, area, mred, med)]
    extra: list[AlsPoint] = []
    mask = np.uint64((1 << s.n) - 1) if s.n < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    for _ in range(max_steps):
        if area <= 0:
            break
        rank = {k: r for r, k in enumerate(order)}
        fanouts = {net: s.fanout(net, readers, rank) for net in nets}
        cands = []
        sources = list(s.inputs) + nets
        matrix = np.stack([values[m] for m in sources]) if similar else None
        for net in nets:
            cands += [(net, CONST0), (net, CONST1)]
            if matrix is None:
                continue
            blocked = {m for k in fanouts[net] for m in netlist.gates[k].outputs.values()} | {net}
            dist = np.bitwise_count((matrix ^ values[net]) & mask).sum(axis=1)
            ranked = [sources[j] for j in np.argsort(dist, kind="stable") if sources[j] not in blocked]
            cands += [(net, m) for m in ranked[:similar]]
        if len(cands) > max_candidates:
            cands = [cands[j] for j in sorted(rng.choice(len(cands), max_candidates, replace=False))]
        best = None
        for net, rep in cands:
            trial = {**subst, net: rep}
            vals = s.simulate(trial, fanouts[net], values)
            t_table, t_mred, t_med = s.score(vals)
            t_area, _ = s.live(vals, trial)
            saved = area - t_area
            if saved <= 0 or t_mred > max_mred or (zero_preserving and s.breaks_zero(t_table)):
                continue
            if keep_candidates:
                extra.append(AlsPoint(tuple(trial.items()), t_table, t_area, t_mred, t_med))
            key = ((max(t_mred - mred, 0.0) + 1e-9) / saved, -saved, net, rep)
            if best is None or key < best[0]:
                best = (key, trial, vals, t_table, t_mred, t_med, t_area)
        if best is None:
            break
        _, subst, values, table, mred, med, area = best
        order, readers = s.graph(subst)
        _, nets = s.live(values, subst)
        points.append(AlsPoint(tuple(subst.items()), table, area, mred, med))
    return points + extra


def _hamming(x: np.ndarray, y: np.ndarray, n: int) -> int:
    d = x ^ y
    if n < 64:
        d = d & np.uint64((1 << n) - 1)
    return int(np.bitwise_count(d).sum())


def pareto(points: list[AlsPoint]) -> list[AlsPoint]:
    """Points not dominated in (area proxy, MRED), sorted by area descending."""
    front = [
        p
        for p in points
        if not any(
            (q.area <= p.area and q.mred <= p.mred) and (q.area < p.area or q.mred < p.mred) for q in points
        )
    ]
    unique = {(p.area, p.mred): p for p in sorted(front, key=lambda p: len(p.subst))}
    return sorted(unique.values(), key=lambda p: (-p.area, p.mred))


def to_verilog_module(netlist: Netlist, fmt: OperandFormat, subst: dict[str, str], top: str) -> str:
    """Plain gate-level Verilog (one ``assign`` per cell output) of `netlist` with `subst` applied."""
    s = _Search(netlist, fmt)
    names: dict[str, str] = {k: k for k in s.inputs}
    names.update({CONST0: "1'b0", CONST1: "1'b1"})
    lines, wires = [], []
    for g in netlist.gates:
        outs = [n for n in g.outputs.values() if n not in subst]
        if not outs:
            continue
        for net in outs:
            names[net] = f"n{len(wires)}"
            wires.append(names[net])
    for g in netlist.gates:
        cell = netlist.cells[g.cell]
        pins = {p: names[s.src(n, subst)] for p, n in g.inputs.items()}
        for pin, net in g.outputs.items():
            if net not in subst:
                lines.append(f"  assign {names[net]} = {to_verilog(cell.functions[pin], pins)};")
    outs = [f"  assign {y} = {names[s.src(y, subst)]};" for y in s.outputs]
    decl = f"  wire {', '.join(wires)};\n" if wires else ""
    p = fmt.a_bits + fmt.w_bits
    return (
        f"module {top}(input [{fmt.a_bits - 1}:0] a, input [{fmt.w_bits - 1}:0] b, output [{p - 1}:0] y);\n"
        + decl
        + "\n".join(lines + outs)
        + "\nendmodule\n"
    )


def als_variants(
    design_verilog: str,
    top: str,
    fmt: OperandFormat,
    *,
    n_max: int = 8,
    seed: int = 0,
    max_mred: float = 0.5,
    max_steps: int = 60,
    max_candidates: int = 300,
    similar: int = 2,
    keep_candidates: bool = False,
) -> list[tuple[str, str, np.ndarray, dict]]:
    """Approximate variants of a design: up to `n_max` Pareto points (area proxy vs MRED), exact one excluded.

    With `keep_candidates` the Pareto set is taken over every candidate evaluated by the greedy search,
    not only its accepted steps (see `search`).

    Returns:
        ``[(verilog, top, table, params)]``; each Verilog computes its table exactly (verify with
        `characterise(..., expected_table=table)`).
    """
    lib = find_liberty()
    netlist = parse_netlist(synthesize(design_verilog, top, liberty=lib), load_cells(lib))
    bitsim.check_ports(netlist, fmt)
    points = search(
        netlist,
        fmt,
        max_steps=max_steps,
        max_mred=max_mred,
        max_candidates=max_candidates,
        seed=seed,
        similar=similar,
        keep_candidates=keep_candidates,
    )
    if keep_candidates:  # approximate points only: a zero-error simplification must not hide them
        front = pareto([p for p in points if p.subst and p.mred > 0])
    else:
        front = [p for p in pareto(points) if p.subst and p.mred > 0]
    if len(front) > n_max:
        picks = np.unique(np.linspace(0, len(front) - 1, n_max).round().astype(int))
        front = [front[k] for k in picks]
    out = []
    for p in front:
        name = f"{top}_als{len(p.subst)}"
        verilog = to_verilog_module(netlist, fmt, dict(p.subst), name)
        params = {"base": top, "steps": len(p.subst), "area_proxy": p.area, "mred": p.mred, "seed": seed}
        out.append((verilog, name, p.table, params))
    return out


# --- near-exact resubstitution -------------------------------------------------------------------------
#
# The greedy ALS above replaces a net by a constant or by another net. Near the exact design every such
# move errs on many code pairs (for u3xs3 none stays below MRED 0.026), so the front of small formats
# started at the first coarse step. Resubstitution (as in SASIMI / ALSRAC) replaces a net by a new
# two-input gate of existing nets whose function differs from the net's on a few code pairs only; the
# net's own driver cone then becomes dead and synthesis re-optimises around the cheaper gate. The error
# lands on the few code pairs where the two functions differ, which is how these variants reach errors
# well below any constant/net substitution with a few per cent of energy saved.


def _two_input_cells(cells: dict) -> list[tuple[str, int]]:
    """(cell, truth table as 4 bits ``f(0,0), f(0,1), f(1,0), f(1,1)`` with A the first argument) of
    the cheapest cell per non-trivial two-input function (AND, OR, NAND, NOR, XOR, ...), by name order."""
    best: dict[int, tuple[float, str]] = {}
    for name in sorted(cells):
        cell = cells[name]
        if len(cell.inputs) != 2 or len(cell.functions) != 1:
            continue
        pin = next(iter(cell.functions))
        a_pin, b_pin = cell.inputs
        words = {f"v_{a_pin}": np.array([0b1100], np.uint64), f"v_{b_pin}": np.array([0b1010], np.uint64)}
        tt = int(cell.evaluator(pin)(**words)[0]) & 0b1111
        # f(A,B) over (A,B) = (1,1),(1,0),(0,1),(0,0) as bits 3..0: constants and single inputs are no gates
        if tt in (0b0000, 0b1111, 0b1100, 0b0011, 0b1010, 0b0101):
            continue
        if tt not in best or (cell.area, name) < best[tt]:
            best[tt] = (cell.area, name)
    return [(name, tt) for tt, (_, name) in sorted(best.items())]


def _apply_tt(tt: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bit-parallel ``f(x, y)`` of a 4-bit truth table (see `_two_input_cells`)."""
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape), np.uint64)
    for bit, (vx, vy) in ((3, (x, y)), (2, (x, ~y)), (1, (~x, y)), (0, (~x, ~y))):
        if (tt >> bit) & 1:
            out |= vx & vy
    return out


@dataclass(frozen=True)
class ResubPoint:
    """One resubstitution: `net` replaced by `cell` (None: by `args[0]` itself) of `args`."""

    net: str
    cell: str | None
    args: tuple[str, ...]
    table: np.ndarray
    area: float
    mred: float
    med: float


def resub_search(
    netlist: Netlist, fmt: OperandFormat, *, max_mred: float = 0.03, max_diff: int | None = None
) -> list[ResubPoint]:
    """Every single resubstitution of `netlist` with a small, non-zero error.

    A live net is replaced by a constant, by another net, or by a new two-input gate (the cheapest cell
    of each function) of two nets outside its fan-out, when the new function differs from the net's on
    at most `max_diff` input patterns (default ``max(4, patterns // 8)``), the product of a zero operand
    stays zero, the area proxy (new gate included) does not grow, and MRED is at most `max_mred`.
    The proxy is only a filter: synthesis re-optimises around the change, so the characterised energy
    decides which points are kept.

    Returns:
        the points sorted by (MRED, area proxy, net, cell, args): deterministic.
    """
    s = _Search(netlist, fmt)
    order, readers = s.graph({})
    values = s.simulate({}, order)
    area, nets = s.live(values, {})
    rank = {k: r for r, k in enumerate(order)}
    mask = np.uint64((1 << s.n) - 1) if s.n < 64 else ONES
    limit = max(4, s.n // 8) if max_diff is None else max_diff
    sources = [CONST0, CONST1] + list(s.inputs) + nets
    matrix = np.stack([values[m] for m in sources])
    cells = _two_input_cells(netlist.cells)
    points: list[ResubPoint] = []
    for net in sorted(nets):
        fanout = s.fanout(net, readers, rank)
        blocked = {m for k in fanout for m in netlist.gates[k].outputs.values()} | {net}
        ok = [j for j, m in enumerate(sources) if m not in blocked]
        moves: list[tuple[str | None, tuple[str, ...], np.ndarray]] = []
        diff = np.bitwise_count((matrix[ok] ^ values[net]) & mask).sum(axis=1)
        moves += [(None, (sources[ok[q]],), matrix[ok[q]]) for q in np.nonzero((diff > 0) & (diff <= limit))[0]]
        gate_ok = [j for j in ok if sources[j] not in (CONST0, CONST1)]
        for p, i in enumerate(gate_ok):
            rest = gate_ok[p + 1 :]
            if not rest:
                continue
            for cell, tt in cells:
                # an asymmetric function also with its arguments swapped
                for swap in (False, True) if tt in (0b0100, 0b0010, 0b1011, 0b1101) else (False,):
                    x, y = (matrix[rest], matrix[i]) if swap else (matrix[i], matrix[rest])
                    out = _apply_tt(tt, x, y)
                    diff = np.bitwise_count((out ^ values[net]) & mask).sum(axis=1)
                    for q in np.nonzero((diff > 0) & (diff <= limit))[0]:
                        pair = (sources[i], sources[rest[q]])
                        moves.append((cell, pair[::-1] if swap else pair, out[q]))
        for cell, args, word in moves:
            if cell is None:
                trial, s2, vals = {net: args[0]}, s, values
            else:
                s2 = _Search(_with_gate(netlist, cell, args), fmt)
                trial, vals = {net: "_resub_y_"}, {**values, "_resub_y_": word}
            new = s2.simulate(trial, fanout, vals)
            table, mred, med = s2.score(new)
            if mred <= 0 or mred > max_mred or s2.breaks_zero(table):
                continue
            t_area, _ = s2.live(new, trial)
            if t_area > area:  # the proxy may not grow (a new gate must make at least its own area dead)
                continue
            points.append(ResubPoint(net, cell, args, table, t_area, mred, med))
    points.sort(key=lambda p: (p.mred, p.area, p.net, p.cell or "", p.args))
    return points


def _with_gate(netlist: Netlist, cell: str, args: tuple[str, ...]) -> Netlist:
    """`netlist` plus one `cell` of the nets `args`, driving the net ``_resub_y_``."""
    ct = netlist.cells[cell]
    gate = Gate("_resub_", cell, dict(zip(ct.inputs, args, strict=True)), {next(iter(ct.functions)): "_resub_y_"})
    return Netlist(netlist.top, netlist.inputs, netlist.outputs, [*netlist.gates, gate], netlist.assigns, netlist.cells)


def resub_variants(
    design_verilog: str,
    top: str,
    fmt: OperandFormat,
    *,
    n_max: int = 24,
    max_mred: float = 0.03,
    per_table: int = 3,
) -> list[tuple[str, str, np.ndarray, dict]]:
    """Near-exact variants of a design by single resubstitutions (see `resub_search`).

    Up to `per_table` points per table (the smallest area proxies first), then up to `n_max` of those,
    spread evenly over the (MRED, area proxy) order, are written back as gate-level Verilog.

    Returns:
        ``[(verilog, top, table, params)]`` like `als_variants`.
    """
    lib = find_liberty()
    netlist = parse_netlist(synthesize(design_verilog, top, liberty=lib), load_cells(lib))
    bitsim.check_ports(netlist, fmt)
    # the area proxy cannot tell apart circuits of one table (synthesis re-optimises them differently,
    # up to ~8 % energy apart), so keep up to `per_table` of each
    count: dict[bytes, int] = {}
    points = []
    for p in resub_search(netlist, fmt, max_mred=max_mred):
        key = p.table.tobytes()
        if count.get(key, 0) < per_table:
            count[key] = count.get(key, 0) + 1
            points.append(p)
    if len(points) > n_max:
        picks = np.unique(np.linspace(0, len(points) - 1, n_max).round().astype(int))
        points = [points[k] for k in picks]
    out = []
    for k, p in enumerate(points):
        name = f"{top}_rs{k}"
        verilog = _resub_verilog(netlist, fmt, p, name)
        params = {"base": top, "resub": [p.net, p.cell or "net", *p.args], "area_proxy": p.area, "mred": p.mred}
        out.append((verilog, name, p.table, params))
    return out



def _resub_verilog(netlist: Netlist, fmt: OperandFormat, p: ResubPoint, top: str) -> str:
    """Gate-level Verilog of `netlist` with resubstitution `p` applied."""
    if p.cell is None:
        return to_verilog_module(netlist, fmt, {p.net: p.args[0]}, top)
    return to_verilog_module(_with_gate(netlist, p.cell, p.args), fmt, {p.net: "_resub_y_"}, top)


def resub_chain(
    design_verilog: str,
    top: str,
    fmt: OperandFormat,
    *,
    steps: int = 8,
    max_mred: float = 0.02,
    trials: int = 8,
    eps: float = 0.002,
    clock_ns: float | None = None,
) -> list[tuple[str, str, np.ndarray, dict]]:
    """Greedy, energy-guided sequence of resubstitutions; every step is a variant.

    Each step maps the current design and runs `resub_search` on it (MRED against the exact product,
    at most `max_mred`). The area proxy does not predict well what synthesis makes of a change
    (same-table circuits differ by up to ~8 % in energy), so the `trials` best candidates by MRED
    increase per unit of proxy area saved and the `trials` with the least MRED (at most two per table)
    are characterised, and the step takes the one with the least ``(MRED increase + eps)`` per pJ saved
    against the current design (`eps` keeps it from crawling by negligible savings); it stops when none
    saves energy (energy falls strictly, so it ends). Single resubstitutions save a few per cent; a
    few of them reach 5-20 % at a small error.

    Returns:
        ``[(verilog, top, table, params)]`` of the steps, in order, like `als_variants`.
    """
    from fames.circuits.characterise import CLOCK_NS, characterise

    clock = CLOCK_NS if clock_ns is None else clock_ns
    lib = find_liberty()
    cells = load_cells(lib)
    verilog, cur_top, mred, table = design_verilog, top, 0.0, fmt.exact_table()
    energy = characterise(verilog, top, fmt, clock_ns=clock, expected_table=table)[0].energy_pj
    out: list[tuple[str, str, np.ndarray, dict]] = []
    moves: list[list[str]] = []
    for step in range(steps):
        netlist = parse_netlist(synthesize(verilog, cur_top, liberty=lib), cells)
        bitsim.check_ports(netlist, fmt)
        name = f"{top}_rc{step}"
        s = _Search(netlist, fmt)
        area, _ = s.live(s.simulate({}, s.graph({})[0]), {})
        points = resub_search(netlist, fmt, max_mred=max_mred)  # by MRED
        by_proxy = sorted(
            (p for p in points if p.area < area),
            key=lambda p: ((max(p.mred - mred, 0.0) + 1e-9) / (area - p.area), p.mred, p.net, p.cell or "", p.args),
        )
        count: dict[bytes, int] = {}
        picks: list[ResubPoint] = []
        for group in (by_proxy, points):
            taken = 0
            for p in group:
                if taken >= trials:
                    break
                if any(p is q for q in picks) or count.get(p.table.tobytes(), 0) >= 2:
                    continue
                count[p.table.tobytes()] = count.get(p.table.tobytes(), 0) + 1
                picks.append(p)
                taken += 1
        best = None
        for p in picks:
            trial = _resub_verilog(netlist, fmt, p, name)
            e = characterise(trial, name, fmt, clock_ns=clock, expected_table=p.table)[0].energy_pj
            if e < energy:
                rank = ((max(p.mred - mred, 0.0) + eps) / (energy - e), p.mred, p.net, p.cell or "", p.args)
                if best is None or rank < best[0]:
                    best = (rank, p, trial, e)
        if best is None:
            break
        _, p, verilog, energy = best
        cur_top, mred, table = name, p.mred, p.table
        moves.append([p.net, p.cell or "net", *p.args])
        params = {"base": top, "resub_chain": [list(m) for m in moves], "mred": p.mred}
        out.append((verilog, cur_top, p.table, params))
    return out
