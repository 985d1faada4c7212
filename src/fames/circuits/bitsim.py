"""Exhaustive simulation of a multiplier netlist over all operand pairs: its LUT and per-net activity.

Pattern ``i`` of the ``2^(BA+BW)`` patterns drives ``a = i mod 2^BA`` and ``b = i >> BA`` (raw bits).
"""

from __future__ import annotations

import numpy as np

from fames.circuits.netlist import CONST0, CONST1, Netlist
from fames.multipliers.formats import OperandFormat


def n_patterns(fmt: OperandFormat) -> int:
    return 1 << (fmt.a_bits + fmt.w_bits)


def pack(bits: np.ndarray) -> np.ndarray:
    """Bool vector -> uint64 words (bit i of the result = bits[i]; padded with zeros to 64)."""
    pad = (-len(bits)) % 64
    padded = np.concatenate([bits.astype(bool), np.zeros(pad, bool)])
    return np.packbits(padded, bitorder="little").view("<u8").astype(np.uint64)


def unpack(words: np.ndarray, n: int) -> np.ndarray:
    """uint64 words -> bool vector of the first `n` patterns."""
    return np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little")[:n].astype(bool)


def input_words(fmt: OperandFormat) -> dict[str, np.ndarray]:
    """The value of every input bit ``a[k]``/``b[k]`` over all patterns."""
    idx = np.arange(n_patterns(fmt))
    words = {f"a[{k}]": pack((idx >> k) & 1) for k in range(fmt.a_bits)}
    words.update({f"b[{k}]": pack((idx >> (fmt.a_bits + k)) & 1) for k in range(fmt.w_bits)})
    return words


def output_nets(fmt: OperandFormat) -> list[str]:
    return [f"y[{k}]" for k in range(fmt.a_bits + fmt.w_bits)]


def check_ports(netlist: Netlist, fmt: OperandFormat) -> None:
    """Raises ValueError unless the netlist has ports ``a[BA]``, ``b[BW]``, ``y[BA+BW]``."""
    want_in = set(input_words(fmt))
    have_in = set(netlist.inputs)
    if have_in != want_in or not set(output_nets(fmt)) <= set(netlist.outputs):
        raise ValueError(
            f"module {netlist.top!r} must have ports input [{fmt.a_bits - 1}:0] a, "
            f"input [{fmt.w_bits - 1}:0] b, "
            f"output [{fmt.a_bits + fmt.w_bits - 1}:0] y for format {fmt.name}; "
            f"it has inputs {sorted(have_in)} and outputs {sorted(netlist.outputs)}"
        )


def simulate_all(netlist: Netlist, fmt: OperandFormat) -> dict[str, np.ndarray]:
    """Every net's words over all patterns (unused operand bits are driven too)."""
    check_ports(netlist, fmt)
    return netlist.simulate(input_words(fmt))


def decode_table(values: dict[str, np.ndarray], fmt: OperandFormat) -> np.ndarray:
    """The LUT (shape ``fmt.shape``, int64) from the simulated output bits."""
    n = n_patterns(fmt)
    p = fmt.a_bits + fmt.w_bits
    y = np.zeros(n, np.int64)
    for k, net in enumerate(output_nets(fmt)):
        y |= unpack(values.get(net, values[CONST0]), n).astype(np.int64) << k
    if fmt.a_signed or fmt.w_signed:
        y = np.where(y >= 1 << (p - 1), y - (1 << p), y)
    table = np.zeros(fmt.shape, np.int64)
    rows, cols = pattern_rows_cols(fmt)
    table[rows, cols] = y
    return table


def pattern_rows_cols(fmt: OperandFormat) -> tuple[np.ndarray, np.ndarray]:
    """Table row and column of every pattern (two's complement codes are offset by their minimum)."""
    idx = np.arange(n_patterns(fmt))
    a_raw = idx & ((1 << fmt.a_bits) - 1)
    b_raw = idx >> fmt.a_bits
    rows = a_raw ^ (1 << (fmt.a_bits - 1)) if fmt.a_signed else a_raw
    cols = b_raw ^ (1 << (fmt.w_bits - 1)) if fmt.w_signed else b_raw
    return rows, cols


def operand_stream(fmt: OperandFormat, n: int, seed: int, weights: np.ndarray | None = None) -> np.ndarray:
    """`n` pattern indices drawn i.i.d. (uniform, or by the |A|x|W| probability matrix `weights`)."""
    rng = np.random.default_rng(seed)
    if weights is None:
        return rng.integers(0, n_patterns(fmt), size=n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != fmt.shape or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"operand distribution must be a non-negative {fmt.shape} matrix with positive sum")
    rows, cols = pattern_rows_cols(fmt)
    p = w[rows, cols]
    return rng.choice(n_patterns(fmt), size=n, p=p / p.sum())


def activities(
    values: dict[str, np.ndarray], nets: list[str], stream: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Per net: (toggles per cycle, share of cycles at 1) as the patterns of `stream` follow each other."""
    words, shift = stream >> 6, (stream & 63).astype(np.uint64)
    out = {}
    for net in nets:
        if net in (CONST0, CONST1):
            continue
        bits = (values[net][words] >> shift) & np.uint64(1)
        out[net] = (float(np.mean(bits[1:] != bits[:-1])), float(bits.mean()))
    return out
