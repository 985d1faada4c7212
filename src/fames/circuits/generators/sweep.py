"""Parameter sweeps: a spread of designs per operand format, and exhaustive 2x2 output simplifications."""

from __future__ import annotations

import itertools

import numpy as np

from fames.circuits.generators import families as fam
from fames.circuits.generators import pp
from fames.circuits.generators.bits import Builder, Sig
from fames.circuits.generators.design import Design, finish
from fames.multipliers.formats import OperandFormat


def enumerate_designs(fmt: OperandFormat) -> list[Design]:
    """The exact design first, then every family over a parameter grid (unique names, stable order).

    Within a family, parameters giving the same function as an earlier design are skipped.
    """
    ba, bw, width = fmt.a_bits, fmt.w_bits, pp.out_bits(fmt)
    designs = [fam.exact(fmt)]
    for k in range(1, max(ba, bw) + 2):
        if k < width:
            designs += [fam.truncated(fmt, k), fam.truncated(fmt, k, compensate=True)]
    for hbl in range(1, min(3, bw)):
        for vbl in range(0, max(ba, bw) + 2, 1 if width <= 8 else 2):
            if vbl < width:
                designs.append(fam.broken_array(fmt, hbl, vbl))
    for start in range(bw):
        for count in (1, 2):
            if start + count <= bw and count < bw:
                designs.append(fam.perforated(fmt, tuple(range(start, start + count))))
    for cell in ("ama2", "ama5"):
        for k in range(2, width + 1, 2 if width <= 10 else 3):
            designs.append(fam.approx_adders(fmt, cell, k))
    for k in range(4, width + 1, 2):
        designs.append(fam.approx_compressors(fmt, k))
    for level in range(1, ba // 2 + bw // 2):
        designs.append(fam.recursive(fmt, level))
    for r in range(1, min(max(ba, bw), 4)):
        for ra, rb in ((r, 0), (0, r), (r, r)):
            if ra < ba and rb < bw:
                for mode in ("trunc", "mid"):
                    designs.append(fam.operand_rounding(fmt, ra, rb, mode))
    seen: set[tuple[str, bytes]] = set()
    unique = []
    for d in designs:  # same family and same function: keep the first (simplest) parameters
        key = (d.family, d.table.tobytes())
        if key not in seen:
            seen.add(key)
            unique.append(d)
    designs = unique
    names = [d.name for d in designs]
    if len(set(names)) != len(names):  # pragma: no cover - guards the grid above
        raise RuntimeError(f"duplicate design names for {fmt.name}")
    return designs


def enumerate_2x2(fmt: OperandFormat, use_pp: bool = False) -> list[Design]:
    """Every distinct function reachable by rewiring the outputs of the exact 2x2 circuit.

    Each output bit y_k is either kept, forced to 0 or 1, or replaced by another exact output bit or,
    with `use_pp`, by a partial-product bit (about 6,500 functions instead of about 1,300). Functions
    are deduplicated by table (first, i.e. simplest, choice kept); the exact function itself is left
    out (see `enumerate_designs`).

    Raises:
        ValueError: when `fmt` is not a 2x2 format.
    """
    if fmt.a_bits != 2 or fmt.w_bits != 2:
        raise ValueError(f"enumerate_2x2 needs a 2x2 format, got {fmt.name}")
    probe = Builder(fmt)
    probe_out, probe_pp = _exact_2x2(probe)
    width = len(probe_out)
    if not use_pp:
        probe_pp = {}
    cand_names = ["0", "1"] + [f"y{k}" for k in range(width)] + [f"p{i}{j}" for i, j in probe_pp]
    cand_vals = np.stack(
        [probe.zero.val, probe.one.val] + [s.val for s in probe_out] + [s.val for s in probe_pp.values()]
    ).astype(np.int64)
    exact_key = probe.table(probe_out).tobytes()
    seen = {exact_key}
    designs: list[Design] = []
    signed = fmt.a_signed or fmt.w_signed
    # per output bit: itself first (cheapest change is none), then the other candidates
    order = [[2 + k] + [c for c in range(len(cand_names)) if c != 2 + k] for k in range(width)]
    for choice in itertools.product(*order):
        raw = sum(cand_vals[c] << k for k, c in enumerate(choice))
        if signed:
            raw = np.where(raw >= 1 << (width - 1), raw - (1 << width), raw)
        key = raw.reshape(fmt.shape).tobytes()
        if key in seen:
            continue
        seen.add(key)
        bld = Builder(fmt)
        outs, pps = _exact_2x2(bld)
        pool = [bld.zero, bld.one] + outs + (list(pps.values()) if use_pp else [])
        picks = [pool[c] for c in choice]
        label = "_".join("e" if c == 2 + k else cand_names[c] for k, c in enumerate(choice))
        params = {"outputs": [cand_names[c] for c in choice]}
        designs.append(finish(bld, "bits2x2", f"bits_{label}", params, picks))
    return designs


def _exact_2x2(bld: Builder) -> tuple[list[Sig], dict[tuple[int, int], Sig]]:
    terms = pp.all_terms(bld.fmt)
    bits = {(i, j): pp.term_bit(bld, i, j) for i, j in terms}
    cols: list[list[Sig]] = [[] for _ in range(pp.out_bits(bld.fmt))]
    for (i, j), bit in bits.items():
        cols[i + j].append(bit)
    pp.add_constant(bld, cols, pp.term_constant(bld.fmt, terms))
    return pp.sum_columns(bld, cols), bits
