"""Prepared multipliers: every exact factorisation of a table, computed once, and the per-layer choice.

A layer's approximate accumulator ``sum_k T(x_k, w_k)`` is computed as ONE convolution with ``R``
channel blocks, block ``r`` holding ``p_r[x]`` as input and ``q_r[w]`` as weight, for a factorisation
``T = P Q^T / d`` (see `fames.emulation.factor`). Candidates, per table:

- ``w-split/table``: ``T[:, v] x 1[w == v]`` for the non-zero columns ``v`` that occur in the layer;
- ``w-split/error``: ``E[:, v] x 1[w == v]`` plus the exact term ``u x v``;
- ``a-split/table`` and ``a-split/error``: the same over activation codes (rows);
- ``low-rank/error``: exact rank-``rank(E)`` skeleton of ``E`` plus the exact term;
- ``low-rank/table``: exact rank-``rank(T)`` skeleton of ``T`` (only kept when fewer terms than all above:
  ``rank(T)`` can be below ``rank(E) + 1``).

Cost model: the emulating conv costs ``R`` exact convs (FLOPs and the gathered input both scale with
``R``); float64 costs `F64_COST` times float32. Linear layers on a CPU with an int8 matmul
(``torch._int_mm``, VNNI: about 8x the float32 matmul rate) may instead run every term as exact
int8 x int8 -> int32 matmuls over the balanced base-256 digits of its factors (`int8_pairs`), costing
`INT8_PAIR_COST` float32 matmuls per digit pair (mostly the per-call weight-side gather). Conv layers on a
CPU with oneDNN's u8 x s8 convolution may instead run all terms as ONE such conv (`int8_conv_layout`:
``P + z`` in ``[0, 255]`` for one zero point ``z``, ``Q`` in ``[-128, 127]``, int32 accumulation; a term
whose ``P`` is wider than a byte runs as two columns, its base-256 digits), costing `INT8_CONV_COST`
float32 convs per column. CPUs without VNNI (AVX2) multiply u8 x s8 pairs into saturating int16 sums, so
there the weight side must stay within ``[-64, 64]`` (`INT8_WEIGHT_PAIR_SAFE`): a wider ``Q`` runs as two
columns ``Q = Q_a + Q_b`` beside the same ``P``. Factor signs are chosen per term for integer units
(`int8_factors`). The cheapest candidate wins; ties keep the listed order.

Exactness rule (`accumulate_dtype`): every partial sum of the conv is an integer whose magnitude is at
most ``K * bound`` (``K`` products per output, ``bound = max_{u,v} sum_r |P[u,r] Q[v,r]|``), whatever
the summation order. float32 represents all integers below ``2^24`` exactly, float64 below ``2^53``;
so float32 is used when ``K * bound < 2^24``, else float32 on ``s`` input-channel slices with
``(K / s) * bound < 2^24`` summed in float64, else float64 when ``K * bound < 2^53``, else the form is
not usable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from fames.emulation.factor import Form, activation_split, low_rank, make_form, weight_split
from fames.emulation.form_cache import cached_forms
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat

F32_EXACT = 2**24
F64_EXACT = 2**53
F64_COST = 8.0
INT8_PAIR_COST = 0.4  # one int8 digit-pair matmul (weight side gathered per call) vs one float32 matmul
INT8_DIGIT_MAX = 128 * 128  # largest |digit product|; int32 accumulation needs K * this < 2^31
INT8_CONV_COST = 0.35  # one term of a oneDNN u8 x s8 conv vs one float32 conv (3-4.5x faster on VNNI)
# A linear layer run as a 1x1 u8 x s8 conv (CPUs whose int8 matmul is slow): one term vs one float32 matmul
# (0.57-0.79 measured on an AVX2 EPYC, N 256, 800 -> 500, 1-8 terms)
INT8_LINEAR_CONV_COST = 0.8
PACKED_WIDTHS = (1, 2, 4, 8)  # int8 conv terms per code fetched as one 8/16/32/64-bit value
U8_PRODUCT_MAX = 255 * 128  # largest |u8 x s8 product| before the zero point is taken off (int32 sums)
INT8_SPLIT_SCALES = (128, 64, 32, 16, 8, 4, 2, 1)  # int8 conv: a split term's high digit as (256/s) H x s Q
INT8_WEIGHT_FULL = 128  # int8 conv weight side in [-128, 127] (VNNI: int32 sums of u8 x s8 products)
# Without VNNI (AVX2) oneDNN adds u8 x s8 products in pairs into saturating int16 (vpmaddubsw): exact while
# |Q| <= 64 (2 * 255 * 64 = 32,640 < 32,767).
INT8_WEIGHT_PAIR_SAFE = 64
MAX_SLICES = 64
DEFAULT_MAX_RANK = 24


@dataclass(frozen=True)
class Choice:
    """How one layer call is emulated.

    Args:
        form: index into `PreparedTable.forms` (-1: exact multiplier, plain conv).
        terms: indices of the form's terms that are kept (weight codes absent from the layer dropped).
        dtype: accumulation dtype.
        slices: number of input-channel slices accumulated separately (float32 exactness).
        cost: cost-model value (exact conv = 1).
        int8: run on integer units: a linear layer as exact int8 x int8 -> int32 matmuls over balanced
            base-256 digits of the factors (`int8_pairs`), a conv as one u8 x s8 conv (`zero_point`);
            `dtype`/`slices` then only fix the output dtype.
        zero_point: int8 conv: the activation side is ``P + zero_point`` as uint8.
        weight_max: int8 conv: the weight side's bound (`int8_weight_range`).
    """

    form: int
    terms: tuple[int, ...]
    dtype: torch.dtype
    slices: int
    cost: float
    int8: bool = False
    zero_point: int = 0
    weight_max: int = INT8_WEIGHT_FULL

    @property
    def rank(self) -> int:
        return len(self.terms)


def byte_digits(v: np.ndarray) -> list[np.ndarray]:
    """Balanced base-256 digits of integers: ``v == sum_i 256^i d_i`` with every ``d_i`` in ``[-128, 127]``."""
    v = np.asarray(v, dtype=np.int64).copy()
    out = []
    while True:
        d = (v + 128) % 256 - 128
        out.append(d.astype(np.int8))
        v = (v - d) // 256
        if not v.any():
            return out


def _digit_cost(p: np.ndarray, q: np.ndarray) -> tuple[int, int, bool]:
    """How a term's factors fare on integer units: digit pairs, Q's digits, and whether P is negative."""
    nq = len(byte_digits(q))
    return len(byte_digits(p)) * nq, nq, bool(p.min() < 0)


def int8_factors(form: Form, terms: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The kept `terms`' factor columns ``(P, Q)`` (int64), each term's sign chosen for integer units.

    ``P[:, t] Q[:, t]`` equals ``(-P[:, t]) (-Q[:, t])``, and a factorisation's signs are arbitrary, but the
    int8 range is not symmetric: ``Q = -w`` spans ``[-127, 128]`` and needs two digits where ``w`` needs
    one. Each term takes the sign with fewer digit pairs, then fewer Q digits (Q must fit ``[-128, 127]``
    for an int8 conv), then a non-negative P (a smaller conv zero point); ties keep the form's sign.
    (``u8xs8_optrunc_a3_b0``: ``P = -(a & ~7)``, ``Q = -w`` took 4 pairs and no int8 conv; flipped, 2 and one.)
    """
    p, q = form.p[:, list(terms)].astype(np.int64), form.q[:, list(terms)].astype(np.int64)
    for t in range(p.shape[1]):
        if _digit_cost(-p[:, t], -q[:, t]) < _digit_cost(p[:, t], q[:, t]):
            p[:, t], q[:, t] = -p[:, t], -q[:, t]
    return p, q


def int8_pairs(form: Form, terms: tuple[int, ...]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(shift, P digit, Q digit)`` per digit pair of the kept `terms` (signs as `int8_factors`), sorted by
    shift: the accumulator is ``sum_pairs 256^shift sum_k Pd[x_k] Qd[w_k]``, each inner sum an exact
    int8 x int8 -> int32 matmul."""
    p, q = int8_factors(form, terms)
    pairs = []
    for t in range(p.shape[1]):
        pd, qd = byte_digits(p[:, t]), byte_digits(q[:, t])
        pairs += [(i + j, a, b) for i, a in enumerate(pd) for j, b in enumerate(qd) if a.any() and b.any()]
    return sorted(pairs, key=lambda pair: pair[0])


def int8_feasible(k: int, pairs: list[tuple[int, np.ndarray, np.ndarray]]) -> bool:
    """int32 holds one pair's sum (``K * 128^2 < 2^31``) and int64 the weighted sum of all pairs."""
    total = sum(256 ** s for s, _, _ in pairs) * k * INT8_DIGIT_MAX
    return k * INT8_DIGIT_MAX < 2**31 and total < 2**62


def int8_conv_width(terms: int) -> int:
    """Input channels per activation channel of an int8 conv with `terms` terms: padded to 2, 4 or 8 (with
    zero terms) so that each code's bytes are gathered as ONE 16/32/64-bit value; more than 8: unpadded."""
    return next((b for b in PACKED_WIDTHS if b >= terms), terms)


def int8_weight_range(weight_max: int) -> tuple[int, int]:
    """The int8 conv's weight range: ``[-128, 127]`` for `INT8_WEIGHT_FULL`, else ``[-weight_max, weight_max]``."""
    return (-128, 127) if weight_max >= INT8_WEIGHT_FULL else (-weight_max, weight_max)


def _weight_parts(q: np.ndarray, weight_max: int) -> list[np.ndarray]:
    """``Q`` as one column or, where it leaves the weight range, two that sum to it (each within it)."""
    lo, hi = int8_weight_range(weight_max)
    if q.min() >= lo and q.max() <= hi:
        return [q]
    qa = np.clip(q, lo, hi)
    return [qa, q - qa]


def _split_columns(p: np.ndarray, q: np.ndarray, z: int, weight_max: int = INT8_WEIGHT_FULL
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """`int8_conv_layout`'s columns at zero point `z`, or None."""
    q_lo, q_hi = int8_weight_range(weight_max)
    pc, qc = [], []
    for t in range(p.shape[1]):
        pt = p[:, t]
        for qt in _weight_parts(q[:, t], weight_max):
            if qt.min() < q_lo or qt.max() > q_hi:
                return None
            if pt.min() + z >= 0 and pt.max() + z <= 255:
                pc.append(pt)
                qc.append(qt)
                continue
            lo = (pt + z) % 256 - z
            hi = (pt - lo) // 256
            for scale in INT8_SPLIT_SCALES:
                qs, hs = qt * scale, hi * (256 // scale)
                if qs.min() >= q_lo and qs.max() <= q_hi and hs.min() + z >= 0 and hs.max() + z <= 255:
                    break
            else:
                return None
            pc += [lo, hs]
            qc += [qt, qs]
    return np.stack(pc, 1), np.stack(qc, 1)


def int8_conv_layout(form: Form, terms: tuple[int, ...], weight_max: int = INT8_WEIGHT_FULL
                     ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Columns ``(P', Q')`` and zero point ``z`` of ONE exact u8 x s8 conv over the kept `terms` (signs as
    `int8_factors`): ``P' Q'^T == P Q^T``, ``P' + z`` in ``[0, 255]``, ``Q'`` in ``[-128, 127]`` (in
    ``[-weight_max, weight_max]`` below `INT8_WEIGHT_FULL`: a wider ``Q`` then runs as two columns that sum
    to it, beside the same ``P``); None when they do not fit.

    A term whose P does not fit beside ``z`` is split into base-256 digits ``P = L + 256 H`` with ``L + z`` in
    ``[0, 255]``, the high digit running as ``(256 / s) H`` against ``s Q`` for the largest ``s`` of
    `INT8_SPLIT_SCALES` that keeps both in range (a w-split form's 0/1 indicator Q takes ``s = 64``: a u8xs4
    random table's 16 terms become 32 int8 columns instead of 16 float32 terms). The zero point is tried as
    ``max(0, -min P)`` (nothing split where everything fits) and as 128 (centred digits); fewer columns win.
    """
    if not terms:
        return None
    p, q = int8_factors(form, terms)
    if int(q.min()) < -128 or int(q.max()) > 127:
        return None
    best = None
    for z in dict.fromkeys((max(0, -int(p.min())), 128)):
        cols = _split_columns(p, q, z, weight_max) if z <= 255 else None
        if cols is not None and (best is None or cols[0].shape[1] < best[0].shape[1]):
            best = (*cols, z)
    return best


def int8_conv_columns(form: Form, terms: tuple[int, ...], k: int, weight_max: int = INT8_WEIGHT_FULL
                      ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """`int8_conv_layout` where the conv is exact for `k` products per output, else None: the int32 sums
    before the zero point is taken off within ``K * width * 255 * 128 < 2^31``, and the float32 output exact
    (``K * bound < 2^24``)."""
    layout = int8_conv_layout(form, terms, weight_max)
    if layout is None or k * form.bound >= F32_EXACT:
        return None
    if k * int8_conv_width(layout[0].shape[1]) * U8_PRODUCT_MAX >= 2**31:
        return None
    return layout


def accumulate_dtype(k: int, bound: float, divisors: list[int]) -> tuple[torch.dtype, int] | None:
    """Pick the accumulation dtype for `k` products per output (see module docstring).

    Args:
        k: products per output (``Cin/groups * kh * kw`` or ``in_features``).
        bound: the form's per-product magnitude bound.
        divisors: admissible slice counts (divisors of the per-group input channels), ascending.

    Returns:
        ``(dtype, slices)`` or None when no float type is exact.
    """
    if k * bound < F32_EXACT:
        return torch.float32, 1
    for s in divisors:
        if 1 < s <= MAX_SLICES and (k // s) * bound < F32_EXACT:
            return torch.float32, s
    if k * bound < F64_EXACT:
        return torch.float64, 1
    return None


@dataclass(eq=False)
class PreparedTable:
    """All exact forms of one multiplier table plus device caches.

    Args:
        name: multiplier name (for messages).
        fmt: operand format.
        is_exact: True when ``E == 0``.
        forms: candidate factorisations.
    """

    name: str
    fmt: OperandFormat
    is_exact: bool
    forms: tuple[Form, ...]
    _tensors: dict = field(default_factory=dict, repr=False)
    _choices: dict = field(default_factory=dict, repr=False)

    def form(self, choice: Choice) -> Form:
        """The factorisation `choice` runs: one of `forms`, or for an exact table (``choice.form == -1``)
        the identity ``P = a codes, Q = w codes`` (run on integer units)."""
        if choice.form >= 0:
            return self.forms[choice.form]
        a, w = self.fmt.a_codes(), self.fmt.w_codes()
        return make_form("exact", "table", a[:, None], w[:, None])

    def choose(self, present: np.ndarray | None, k: int, divisors: list[int], int8: bool = False,
               int8_conv: bool = False, weight_max: int = INT8_WEIGHT_FULL,
               conv_cost: float = INT8_CONV_COST) -> Choice:
        """Cheapest exact choice for a layer whose weight codes occur where `present` is True.

        With ``int8=True`` (linear layers on a CPU with an int8 matmul) a form may instead be run as int8
        digit-pair matmuls, costing `INT8_PAIR_COST` per pair (`int8_pairs`); with ``int8_conv=True`` (conv
        layers on a CPU with oneDNN's u8 x s8 conv) as one int8 conv, costing `conv_cost` per term
        (`int8_conv_columns`, its weight side within `weight_max`; `INT8_LINEAR_CONV_COST` for a linear layer
        run as a 1x1 conv). The cheapest wins.

        Raises:
            ValueError: when no form is exactly representable in float64 for this `k`.
        """
        key = (None if present is None else present.tobytes(), k, tuple(divisors), int8, int8_conv, weight_max,
               conv_cost)
        if key in self._choices:
            return self._choices[key]
        if self.is_exact:  # the layer's own op, or the identity factors on integer units where cheaper
            best = Choice(-1, (), torch.float32, 1, 1.0)
            identity = self.form(best)
            if int8 and int8_feasible(k, pairs := int8_pairs(identity, (0,))):
                best = min(best, Choice(-1, (0,), torch.float32, 1, len(pairs) * INT8_PAIR_COST, True),
                           key=lambda c: c.cost)
            if int8_conv and (columns := int8_conv_columns(identity, (0,), k, weight_max)) is not None:
                cost = int8_conv_width(columns[0].shape[1]) * conv_cost
                best = min(best, Choice(-1, (0,), torch.float32, 1, cost, True, columns[2], weight_max),
                           key=lambda c: c.cost)
            self._choices[key] = best
            return best
        best = None
        for i, form in enumerate(self.forms):
            if form.w_col is not None:
                terms = tuple(int(t) for t in np.flatnonzero((form.w_col < 0) | present[form.w_col]))
            else:
                terms = tuple(range(form.rank))
            acc = accumulate_dtype(k, form.bound, divisors)
            if acc is None:
                continue
            cost = max(len(terms), 1) * (1.0 if acc[0] == torch.float32 else F64_COST)
            if best is None or cost < best.cost:
                best = Choice(i, terms, acc[0], acc[1], cost)
            if int8:
                pairs = int8_pairs(form, terms)
                cost = max(len(pairs), 1) * INT8_PAIR_COST
                if int8_feasible(k, pairs) and cost < best.cost:
                    best = Choice(i, terms, acc[0], acc[1], cost, True)
            if int8_conv and (columns := int8_conv_columns(form, terms, k, weight_max)) is not None:
                cost = int8_conv_width(columns[0].shape[1]) * conv_cost
                if cost < best.cost:
                    best = Choice(i, terms, torch.float32, 1, cost, True, columns[2], weight_max)
        if best is None:
            raise ValueError(
                f"multiplier {self.name!r}: no exact float accumulation for {k} products per output"
            )
        self._choices[key] = best
        return best

    def factors(self, choice: Choice, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(P, Q, denom)`` of `choice` as tensors of its dtype on `device` (cached)."""
        key = (choice.form, choice.terms, choice.dtype, str(device))
        if key not in self._tensors:
            form = self.forms[choice.form]
            idx = list(choice.terms)
            p = torch.as_tensor(form.p[:, idx], dtype=choice.dtype, device=device).contiguous()
            q = torch.as_tensor(form.q[:, idx], dtype=choice.dtype, device=device).contiguous()
            self._tensors[key] = (p, q, form.denom)
        return self._tensors[key]


_CACHE: dict[tuple[str, str, int], PreparedTable] = {}


def table_key(table: np.ndarray, fmt: OperandFormat) -> str:
    """Hash of a table's bytes and format (the preparation cache key)."""
    data = np.ascontiguousarray(table, dtype=np.int64).tobytes()
    return hashlib.sha1(data + fmt.name.encode()).hexdigest()


def build_forms(table: np.ndarray, fmt: OperandFormat, max_rank: int = DEFAULT_MAX_RANK) -> tuple[Form, ...]:
    """All candidate forms of `table` (each verified exact by construction or by `check_form`)."""
    table = np.asarray(table, dtype=np.int64)
    a, w = fmt.a_codes(), fmt.w_codes()
    err = table - np.outer(a, w)
    ident_p, ident_q = a[:, None], w[:, None]
    forms = []
    p, q, cols = weight_split(table)
    forms.append(make_form("w-split", "table", p, q, 1, cols))
    p, q, cols = weight_split(err)
    forms.append(make_form("w-split", "error", np.hstack([p, ident_p]), np.hstack([q, ident_q]), 1,
                           np.append(cols, -1)))
    p, q = activation_split(table)
    forms.append(make_form("a-split", "table", p, q))
    p, q = activation_split(err)
    forms.append(make_form("a-split", "error", np.hstack([p, ident_p]), np.hstack([q, ident_q])))
    limit = min(max_rank, min(forms[0].rank, forms[2].rank) - 2)
    lr = low_rank(err, limit) if limit >= 0 else None
    if lr is not None:
        p, q, d = lr
        forms.append(make_form("low-rank", "error", np.hstack([p, ident_p * d]), np.hstack([q, ident_q]), d))
    # rank(T) can be below rank(E) + 1 (e.g. when E cancels part of u v): factor T itself as well
    limit = min(max_rank, min(f.rank for f in forms) - 1)
    lr = low_rank(table, limit) if limit >= 0 else None
    if lr is not None:
        forms.append(make_form("low-rank", "table", *lr))
    return tuple(forms)


def prepare(mul: AppMul, max_rank: int = DEFAULT_MAX_RANK) -> PreparedTable:
    """Prepared form of `mul`, cached by table hash and format (shared by all layers using it; the forms
    themselves also on disk, `fames.emulation.form_cache`).

    Args:
        mul: the multiplier.
        max_rank: largest error rank tried for the low-rank form.

    Returns:
        The `PreparedTable`.
    """
    digest = table_key(mul.table, mul.fmt)
    key = (digest, mul.fmt.name, max_rank)
    if key not in _CACHE:
        is_exact = mul.is_exact
        forms = () if is_exact else cached_forms(mul.table, mul.fmt, digest, max_rank, build_forms)
        _CACHE[key] = PreparedTable(mul.name, mul.fmt, is_exact, forms)
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every prepared table (and their device tensors)."""
    _CACHE.clear()
