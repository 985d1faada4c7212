"""Approximate conv2d / linear on integer codes: ``sum_k T(x_k, w_k)`` exactly, with ``R`` ordinary convs.

For the factorisation ``T = P Q^T / d`` chosen by `PreparedTable.choose`, the accumulator is
``sum_k sum_r P[x_k, r] Q[w_k, r] / d``: for every term ``r`` the activation codes are gathered into
``P[x, r]`` (a 1-D gather with 32-bit indices, in the input's own NCHW layout: no transpose) and the weight
codes into ``Q[w, r]``, and one ordinary (grouped) conv / matmul per term is accumulated in place. (One
conv over ``R`` concatenated channel blocks has the same FLOPs but needs a row gather that costs several
times the 1-D one on CPU, plus a channels-last transpose of the codes.)

Padding: the conv pads the gathered input with zeros; when ``pad_taps`` and ``T[0, v] != 0`` for some
occurring weight code, the padded taps' share ``sum_{padded taps} d T[0, w]`` does not depend on the input,
so it is computed once per input geometry (a one-channel conv of the padding mask with
``sum_c d T[0, w[o, c, i, j]]``, exact in float64) and added.

To bound peak memory, the batch is processed in chunks so that the gathered input stays within
`GATHER_BUDGET` times the activation plus output tensors; the weight side can be planned once per weight
(`plan_conv2d_weight`, `plan_linear_weight`) and reused across calls.

Linear layers on a CPU with an int8 matmul (``torch._int_mm``; VNNI makes it about 8x the float32 rate)
may instead run as exact int8 x int8 -> int32 matmuls: every factor column is split into balanced
base-256 digits in ``[-128, 127]`` and each digit pair ``(i, j)`` of a term adds
``256^(i+j) sum_k Pd_i[x_k] Qd_j[w_k]`` (pairs of one shift are concatenated along K, `INT8_BLOCK` at a
time, with ``K * 128^2 < 2^31`` so int32 cannot overflow); blocks are summed exactly in int32 or int64
and converted to the same output dtype as the float path. The cost model picks it per layer
(`fames.emulation.plan.PreparedTable.choose`). Set `INT8_LINEAR` False to force the float path.

Conv layers on a CPU whose oneDNN has a u8 x s8 convolution (``torch.ops.onednn.qconv2d_pointwise``; with
VNNI 3-4.5x the float32 conv rate on the reference models' shapes) may instead run every term at once as ONE
integer conv: the activation side is gathered as ``P[x] + z`` in uint8 with one zero point ``z``, the weight
side is ``Q[w]`` in int8, and oneDNN accumulates ``sum (u - z) q`` in int32 (the zero point is taken off in
int32 too) and converts to float32 with unit scales, which is exact while ``K * bound < 2^24``
(`fames.emulation.plan.int8_conv_columns`; a term whose factors are wider than a byte runs as two
columns, ``P = L + 256 H``, the high digit scaled against its weight: `int8_conv_layout`). Padded taps:
with ``pad_taps`` the indices are padded with code 0 as in the interleaved float path; without, oneDNN pads
with the zero point, i.e. with 0. Whether the
device computes these sums exactly is checked once (`int8_conv_weight_max`, saturating values included):
with VNNI for the whole int8 weight range; without it (AVX2, whose u8 x s8 pairs go through saturating
int16 sums) for weights within ``[-64, 64]``, a wider weight factor then running as two columns (about 2.5-3x
the float32 conv rate on an AVX2 EPYC, where the float path made `fames select` on ResNet twice as slow).
Set `INT8_CONV` False to force the float path.

Where the int8 matmul is slow but that conv is exact (AVX2: `int8_available` declines ``torch._int_mm``, about
30x slower than float32 there), a linear layer runs on the same conv path as a 1x1 conv over ``(N, K, 1, 1)``
when the cost model prefers it (`fames.emulation.plan.INT8_LINEAR_CONV_COST` per column against a float32
matmul per term: 1.3-1.8x the float32 matmul rate per column on an AVX2 EPYC).

Memory accounting: a `WeightPlan` is a per-layer cache kept between calls like a parameter, and its size is
bounded: float path ``max(WEIGHT_BUDGET, 2 |w|)`` elements of batched weights (beyond that each chunk is
rebuilt per call); int8 path at most `INT8_CACHE` times the weight tensor's bytes of gathered int8 blocks,
plus the int32 weight indices when some block is gathered per call. The benchmark's memory probe makes
the plan inside the measured call, so the cache counts towards the layer's peak memory.

Padding (DESIGN.md section 2): with ``pad_taps=True`` a padded position feeds activation code 0 into the
multiplier (codes are padded *before* gathering, so ``T[0, w]`` counts); with ``pad_taps=False`` padded
taps are skipped (contribute nothing), as on accelerators that do not issue them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fames.emulation.plan import (
    INT8_CONV_COST,
    INT8_DIGIT_MAX,
    INT8_LINEAR_CONV_COST,
    INT8_WEIGHT_FULL,
    INT8_WEIGHT_PAIR_SAFE,
    PACKED_WIDTHS,
    Choice,
    PreparedTable,
    accumulate_dtype,
    int8_conv_layout,
    int8_conv_width,
    int8_pairs,
    int8_weight_range,
)
from fames.quant.exact_math import exact_math as _exact_math
from fames.quant.lsq import issued_within

GATHER_BUDGET = 1.0  # gathered activation chunk <= this many times (activation + output) elements
MIN_BUDGET = 1 << 20  # elements; below this, never split the batch
WEIGHT_BUDGET = 1 << 20  # elements of cached batched weights per layer (or 2x the weight if larger)
INTERLEAVE_MIN = 4  # conv: from this many terms on, one row gather into channels-last (see _interleaved)
INT8_LINEAR = True  # linear layers: exact int8 digit-pair matmuls where the device has them (CPU _int_mm)
INT8_BLOCK = 1  # digit pairs of one shift gathered together and summed by one (K-concatenated) int8 matmul
INT8_CACHE = 1.0  # int8 weight blocks cached per layer: at most this many times the weight tensor's bytes
INT8_CONV = True  # conv layers: one exact oneDNN u8 x s8 conv over all terms where the device has it (CPU)
_WORKSPACE: dict[tuple[str, torch.dtype], torch.Tensor] = {}
_INT8_OK: dict[str, bool] = {}
_INT8_CONV_OK: dict[str, int] = {}  # device -> int8_conv_weight_max


@dataclass
class Int8Block:
    """One int8 matmul of a linear layer: ``nb`` digit pairs of the same ``shift`` (weight ``256^shift``).

    Args:
        shift: the block's partial accumulator is multiplied by ``256^shift``.
        ta: activation-side digit table ``(|A|, nb)`` int8 (``(|A|,)`` when ``nb == 1``).
        tb: weight-side digit table ``(|W|, nb)`` int8 (``(|W|,)`` when ``nb == 1``).
        nb: digit pairs in the block.
        b: cached gathered weight ``(out_features, in_features * nb)`` int8, or None (made per call).
        indicator: ``(code index v, value c)`` when the block's weight digit is ``c [w == v]`` (a w-split
            form's term: one non-zero entry in `tb`) and is made per call: then by one comparison of the
            plan's uint8 codes instead of a gather (a u8xs4 random table's 32 blocks, see `_linear_int8`).
    """

    shift: int
    ta: torch.Tensor
    tb: torch.Tensor
    nb: int
    b: torch.Tensor | None
    indicator: tuple[int, int] | None = None


_PACKED = dict(zip(PACKED_WIDTHS, (torch.uint8, torch.int16, torch.int32, torch.int64), strict=True))


@dataclass
class QConvWeight:
    """The weight side of a conv run as one oneDNN u8 x s8 conv (``Choice.int8`` on a conv layer).

    Args:
        table: ``(|A|, width)`` uint8 activation-side factors ``P + zero_point``; columns beyond the terms
            (`int8_conv_width`) hold the zero point, i.e. 0.
        zero_point: the activation side's zero point.
        weight: ``(Cout, Cin/groups * width, kh, kw)`` int8 weight, input channels ordered (channel, term);
            padded terms have weight 0.
        groups: conv groups.
        packed: oneDNN's packed weight per ``(stride, padding, dilation)`` (made on first use).

    Attributes:
        affine: ``(a, b)`` when the table is one column ``P[i] + z = a i + b`` (the exact multiplier, and any
            whose activation side is exact up to scale): the uint8 input is then computed from the codes
            (`_channels_last_affine`) instead of gathered; else None.
    """

    table: torch.Tensor
    zero_point: int
    weight: torch.Tensor
    groups: int
    packed: dict = field(default_factory=dict)
    affine: tuple[int, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.table.dim() != 2 or not self.table.numel():  # e.g. the self-check's bare weight
            return
        col = self.table[:, 0].to(torch.int32)
        a = int(col[1] - col[0]) if len(col) > 1 else 1
        ramp = torch.arange(len(col), dtype=torch.int32, device=col.device) * a + col[0]
        if self.width == 1 and torch.equal(col, ramp):
            self.affine = (a, int(col[0]))

    @property
    def width(self) -> int:
        return self.table.shape[1]

    def pack(self, stride: list[int], padding: list[int], dilation: list[int]) -> torch.Tensor:
        key = (tuple(stride), tuple(padding), tuple(dilation))
        if key not in self.packed:
            ones = torch.ones(self.weight.shape[0], device=self.weight.device)
            self.packed[key] = torch.ops.onednn.qconv_prepack(self.weight, ones, 1.0, self.zero_point, stride,
                                                              padding, dilation, self.groups, None)
        return self.packed[key]

    def gather(self, idx: torch.Tensor, out: torch.Tensor) -> None:
        """``out[i, :] = table[idx[i], :]`` (`out`: flat uint8): one 1-D gather of packed bytes when the
        width is 1, 2, 4 or 8 (several times faster than a row gather of a few bytes), else a row gather."""
        dtype = _PACKED.get(self.width)
        if dtype is None:
            torch.index_select(self.table, 0, idx, out=out.view(-1, self.width))
        else:
            torch.index_select(self.table.view(dtype).reshape(-1), 0, idx, out=out.view(dtype))


def qconv(x_u8: torch.Tensor, zero_point: int, packed: torch.Tensor, cout: int, stride: list[int],
          padding: list[int], dilation: list[int], groups: int) -> torch.Tensor:
    """``conv(x_u8 - zero_point, w)`` exactly as float32 (channels-last) with oneDNN's u8 x s8 conv and unit
    scales (int32 accumulation; exact while every result is below 2^24)."""
    ones = torch.ones(cout, device=x_u8.device)
    zeros = torch.zeros(cout, dtype=torch.int64, device=x_u8.device)
    return torch.ops.onednn.qconv2d_pointwise(x_u8, 1.0, zero_point, packed, ones, zeros, None, stride, padding,
                                              dilation, groups, 1.0, 0, torch.float32, "none", [], "")


@dataclass
class WeightPlan:
    """The weight side of one emulated layer, reusable while the weight codes do not change.

    Args:
        choice: the chosen factorisation (``choice.form < 0``: exact multiplier).
        p: activation-side factors ``(|A|, R)`` on the weight's device, or None when exact.
        denom: common denominator of the factorisation.
        chunks: ``(first term, term count, batched weight or None)`` per term chunk; None: built on
            each call by `build` (when caching every chunk would exceed `WEIGHT_BUDGET`).
        dtype: accumulation dtype.
        shape: shape of the weight codes the plan was made from.
        build: ``build(first term, term count)`` makes a chunk's batched weight.
        blocks: linear layers run as int8 digit-pair matmuls (``choice.int8``): the blocks; else None.
        widx: int8 blocks gathered per call: the flat int32 weight indices; else None.
        wcodes: int8 blocks made per call by comparison (`Int8Block.indicator`): the flat uint8 weight
            indices; else None.
        acc_dtype: int8 blocks: int32 when ``K sum_pairs 256^shift 128^2 < 2^31`` (no overflow), else int64.
        zero_taps: conv: ``sum_c d T[code 0, w[o, c, i, j]]`` as float64 ``(Cout, 1, kh, kw)``, else None.
        borders: conv: the padded taps' constant share per input geometry (made on first use).
        qconv: conv run as one u8 x s8 conv (``choice.int8``): its weight side; else None.
    """

    choice: Choice
    p: torch.Tensor | None
    denom: int
    chunks: list[tuple[int, int, torch.Tensor | None]]
    dtype: torch.dtype
    shape: tuple[int, ...]
    build: Callable[[int, int], torch.Tensor] | None = None
    blocks: list[Int8Block] | None = None
    widx: torch.Tensor | None = None
    acc_dtype: torch.dtype = torch.int32
    zero_taps: torch.Tensor | None = None
    borders: dict = field(default_factory=dict)
    qconv: QConvWeight | None = None
    wcodes: torch.Tensor | None = None

    def weight(self, t0: int, r: int, cached: torch.Tensor | None) -> torch.Tensor:
        return cached if cached is not None else self.build(t0, r)


def _workspace(numel: int, dtype: torch.dtype, device: torch.device, slot: str) -> torch.Tensor:
    """A reusable flat buffer (avoids page-faulting a fresh allocation on every call)."""
    key = (f"{device}:{slot}", dtype)
    buf = _WORKSPACE.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype, device=device)
        _WORKSPACE[key] = buf
    return buf[:numel]


def int8_available(device: torch.device) -> bool:
    """Whether exact int8 x int8 -> int32 matmuls (``torch._int_mm``) work on `device` (`int_mm_exact`) and
    are at least as fast as the float32 matmul of the same shape (CPU only: on GPUs the float path is fast
    and ``_int_mm`` has shape restrictions; on CPUs without VNNI torch's kernel was about 30-100x slower
    than float32 on an AVX2 EPYC, which made VGG's selection twice as slow). Checked once per device."""
    if not INT8_LINEAR or device.type != "cpu" or not hasattr(torch, "_int_mm"):
        return False
    key = str(device)
    if key not in _INT8_OK:
        _INT8_OK[key] = int_mm_exact(device) and _int_mm_speed_ratio(device) >= 1.0
    return _INT8_OK[key]


def int_mm_exact(device: torch.device) -> bool:
    """Whether ``torch._int_mm`` computes exact int32 sums of int8 products on `device`."""
    if not hasattr(torch, "_int_mm"):
        return False
    a = torch.tensor([[-128, 127, 3], [5, -7, 1]], dtype=torch.int8, device=device)
    try:
        return torch.equal(torch._int_mm(a, a.t()).long().cpu(), (a.long() @ a.long().t()).cpu())
    except (RuntimeError, NotImplementedError):
        return False


def _int_mm_speed_ratio(device: torch.device, m: int = 128, k: int = 512, n: int = 256) -> float:
    """Seconds of a float32 matmul over seconds of ``torch._int_mm`` on the same shape, each the best of 3
    after a warm-up, on one thread (a pool waiting for a busy core would time the wait): VNNI CPUs give
    several times 1; CPUs where torch has no fast int8 kernel about 0.01."""
    a = torch.ones(m, k, dtype=torch.int8, device=device)
    b = torch.ones(k, n, dtype=torch.int8, device=device)
    af, bf = a.float(), b.float()

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return best(lambda: af @ bf) / max(best(lambda: torch._int_mm(a, b)), 1e-9)
    finally:
        torch.set_num_threads(threads)


def int8_conv_weight_max(device: torch.device) -> int:
    """How wide the weight side of oneDNN's u8 x s8 conv may be on `device` for exact integer sums (CPU
    only): `INT8_WEIGHT_FULL` (the int8 range; VNNI), `INT8_WEIGHT_PAIR_SAFE` (``|Q| <= 64``: CPUs without
    VNNI add products in pairs into saturating int16), or 0 (no exact conv: the float path). Checked once
    per device on values that saturate 16-bit intermediate sums at each bound and on int32 sums far above
    2^24 that the zero point brings back below it."""
    if not INT8_CONV or device.type != "cpu" or not hasattr(torch.ops.onednn, "qconv2d_pointwise"):
        return 0
    key = str(device)
    if key not in _INT8_CONV_OK:
        _INT8_CONV_OK[key] = next((m for m in (INT8_WEIGHT_FULL, INT8_WEIGHT_PAIR_SAFE) if _qconv_exact(m)), 0)
    return _INT8_CONV_OK[key]


def int8_conv_available(device: torch.device) -> bool:
    """Whether oneDNN's u8 x s8 conv computes exact integer sums on `device` for some weight range
    (`int8_conv_weight_max`)."""
    return int8_conv_weight_max(device) > 0


def _qconv_exact(weight_max: int) -> bool:
    """Whether `qconv` is exact for weights up to `weight_max` in magnitude (`int8_weight_range`)."""
    lo, hi = int8_weight_range(weight_max)
    gen = torch.Generator().manual_seed(0)
    w = torch.randint(hi - 27, hi + 1, (4, 64, 3, 3), generator=gen, dtype=torch.int8)
    w[1::2] = torch.clamp(-w[1::2].to(torch.int16) - 1, lo, hi).to(torch.int8)  # down to the lower bound
    for zero_point, x_lo, x_hi in ((0, 240, 256), (250, -3, 6)):
        x = torch.randint(x_lo, x_hi, (2, 64, 5, 5), generator=gen).double()
        ref = F.conv2d(x, w.double(), None, 1, 1)
        x_u8 = (x + zero_point).to(torch.uint8).contiguous(memory_format=torch.channels_last)
        try:
            packed = QConvWeight(x_u8.new_empty(0), zero_point, w, 1).pack([1, 1], [1, 1], [1, 1])
            if not torch.equal(qconv(x_u8, zero_point, packed, 4, [1, 1], [1, 1], [1, 1], 1).double(), ref):
                return False
        except (RuntimeError, NotImplementedError):
            return False
    return True


def _code_indices(codes: torch.Tensor, lo: int) -> torch.Tensor:
    """Flat int32 table indices ``code - lo`` of `codes`, in the reusable "idx" workspace."""
    idx = _workspace(codes.numel(), torch.int32, codes.device, "idx")
    idx.copy_(codes.reshape(-1))
    if lo:
        idx.sub_(lo)
    return idx


def clear_workspace() -> None:
    """Release the cached gather buffers."""
    _WORKSPACE.clear()


def _batch_chunk(n: int, per_sample: int, terms: int, io_numel: int) -> int:
    """Samples per chunk so that the gathered input stays within `GATHER_BUDGET` x (input + output)."""
    budget = max(GATHER_BUDGET * io_numel, MIN_BUDGET)
    return max(1, min(n, int(budget // (per_sample * terms))))


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _padding(padding: int | tuple[int, int] | str, kernel: tuple[int, int], dilation) -> tuple[int, int]:
    """Symmetric zero padding as a pair; ``"valid"`` and ``"same"`` (odd effective kernels) accepted."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(_pair(dilation), kernel, strict=True)]
        if any(t % 2 for t in total):
            raise ValueError(f"padding='same' with kernel {tuple(kernel)} is asymmetric (unsupported)")
        return total[0] // 2, total[1] // 2
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    return _pair(padding)


def _finish(out: torch.Tensor, denom: int) -> torch.Tensor:
    """Divide by the common denominator; on accelerators also round (their conv algorithms, e.g.
    Winograd/FFT, may leave errors far below 0.5 on exact-integer results)."""
    if denom != 1:
        out = out.div_(denom)
    if denom != 1 or out.device.type != "cpu":
        out = out.round_()
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _memory_order(t: torch.Tensor) -> torch.Tensor:
    """A channels-last 4-D `t` as the NHWC view of its memory (reductions over it then need no copy)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1)
    return t


def _check_range(codes: torch.Tensor, lo: int, hi: int, what: str) -> None:
    """Raise unless every code lies in ``[lo, hi]``; codes a quantizer just clamped into it pass unread."""
    if codes.numel() == 0 or issued_within(codes, lo, hi):
        return
    cmin, cmax = (float(v) for v in torch.aminmax(_memory_order(codes.detach())))
    if cmin < lo or cmax > hi:
        raise ValueError(f"{what} codes span [{cmin:g}, {cmax:g}], the multiplier format allows [{lo}, {hi}]")


def _exact_dtype(prepared: PreparedTable, k: int) -> torch.dtype:
    (a_lo, a_hi), (w_lo, w_hi) = prepared.fmt.a_range, prepared.fmt.w_range
    bound = max(abs(a_lo), abs(a_hi)) * max(abs(w_lo), abs(w_hi))
    acc = accumulate_dtype(k, bound, [])
    return torch.float64 if acc is None else acc[0]


def _plan(w_int: torch.Tensor, prepared: PreparedTable, k: int, cin_g: int, batched,
          per_chunk: int | None = None, int8: bool = False, groups: int = 0,
          weight_max: int = INT8_WEIGHT_FULL, linear_conv: bool = False) -> WeightPlan:
    """Choose the form for these weight codes and plan the batched weight of every term chunk (cached
    when all chunks together stay within ``max(WEIGHT_BUDGET, 2 |w|)`` elements, else built per call).
    With ``int8`` the choice may run on integer units: int8 digit-pair matmuls for a linear layer
    (`_plan_int8`), one u8 x s8 conv for a conv layer (``groups > 0``; `_plan_int8_conv`, its weight side
    within `weight_max`) or, with ``linear_conv``, for a linear layer as a 1x1 conv."""
    w_lo, w_hi = prepared.fmt.w_range
    _check_range(w_int, w_lo, w_hi, "weight")
    shape = tuple(w_int.shape)
    conv = groups > 0 or linear_conv
    int8_mm, int8_conv = int8 and not conv, int8 and conv
    conv_cost = INT8_LINEAR_CONV_COST if linear_conv else INT8_CONV_COST
    if prepared.is_exact:
        choice = prepared.choose(None, k, [], int8_mm, int8_conv, weight_max, conv_cost)
        if not choice.int8:
            return WeightPlan(choice, None, 1, [], _exact_dtype(prepared, k), shape)
    widx = w_int.detach().to(torch.int32)  # 32-bit weight indices (no int64 copy of the weight)
    if w_lo:
        widx.sub_(w_lo)
    if not prepared.is_exact:
        present = torch.bincount(widx.flatten(), minlength=w_hi - w_lo + 1).cpu().numpy() > 0
        choice = prepared.choose(present, k, _divisors(cin_g), int8_mm, int8_conv, weight_max, conv_cost)
    if choice.int8 and conv:
        w4 = w_int if groups else w_int.view(*shape, 1, 1)  # a linear layer: (Cout, K, 1, 1)
        return _plan_int8_conv(w4, widx.view(w4.shape), prepared, choice, max(groups, 1))
    if choice.int8:
        return _plan_int8(w_int, widx.flatten(), prepared, choice, k)
    p, q, denom = prepared.factors(choice, w_int.device)
    budget = max(WEIGHT_BUDGET, 2 * w_int.numel())
    per_chunk = per_chunk or max(1, budget // w_int.numel())
    cache = choice.rank * w_int.numel() <= budget
    if per_chunk == 1:  # one term at a time: 1-D gathers with 32-bit indices (far cheaper than q[widx])
        qt = q.t().contiguous()
        widx = widx.flatten()
    else:
        widx = widx.long()

    def build(t0: int, r: int) -> torch.Tensor:
        if per_chunk == 1:
            return batched(torch.index_select(qt[t0], 0, widx).view(*shape, 1), 1, choice)
        return batched(q[:, t0:t0 + r][widx], r, choice)

    chunks = []
    for t0 in range(0, choice.rank, per_chunk):
        r = min(per_chunk, choice.rank - t0)
        chunks.append((t0, r, build(t0, r) if cache else None))
    return WeightPlan(choice, p, denom, chunks, choice.dtype, shape, build)


def _plan_int8(w_int: torch.Tensor, widx: torch.Tensor, prepared: PreparedTable, choice: Choice,
               k: int) -> WeightPlan:
    """Int8 digit-pair blocks of a linear layer (`widx`: flat int32 weight indices). A block's gathered
    weight is cached in the plan while all cached blocks together stay within `INT8_CACHE` times the weight
    tensor's bytes, else made per call: by comparison with the uint8 weight codes (`wcodes`, a quarter of
    the weight's bytes) where its digit is an indicator, else gathered (then the plan keeps `widx`, one
    weight's worth of bytes)."""
    cout, cin = w_int.shape
    form = prepared.form(choice)
    pairs = int8_pairs(form, choice.terms)
    nb_max = max(1, min(INT8_BLOCK, (2**31 - 1) // (k * INT8_DIGIT_MAX)))
    budget = INT8_CACHE * w_int.numel() * w_int.element_size()
    dev = w_int.device
    blocks, cached = [], 0
    for shift, group in itertools.groupby(pairs, key=lambda pair: pair[0]):
        group = list(group)
        for g0 in range(0, len(group), nb_max):
            part = group[g0:g0 + nb_max]
            nb = len(part)
            ta = torch.as_tensor(np.stack([a for _, a, _ in part], 1), device=dev)
            tb = torch.as_tensor(np.stack([b for _, _, b in part], 1), device=dev)
            if nb == 1:
                ta, tb = ta[:, 0].contiguous(), tb[:, 0].contiguous()
            b, indicator = None, None
            if cached + cout * cin * nb <= budget:
                b = torch.index_select(tb, 0, widx).view(cout, cin * nb)
                cached += b.numel()
            elif nb == 1 and int(torch.count_nonzero(tb)) == 1:
                v = int(torch.nonzero(tb)[0, 0])
                indicator = (v, int(tb[v]))
            blocks.append(Int8Block(shift, ta, tb, nb, b, indicator))
    wide = sum(256**shift for shift, _, _ in pairs) * k * INT8_DIGIT_MAX >= 2**31
    gathered = any(blk.b is None and blk.indicator is None for blk in blocks)
    compared = any(blk.indicator is not None for blk in blocks)
    return WeightPlan(choice, None, form.denom, [], choice.dtype, tuple(w_int.shape), None, blocks,
                      widx if gathered else None, torch.int64 if wide else torch.int32,
                      wcodes=widx.to(torch.uint8) if compared else None)


def _plan_int8_conv(w_int: torch.Tensor, widx: torch.Tensor, prepared: PreparedTable, choice: Choice,
                    groups: int) -> WeightPlan:
    """One u8 x s8 conv over all kept terms (`widx`: int32 weight indices): the uint8 activation table and the
    int8 weight with input channels ordered (channel, term), as the interleaved float layout."""
    form = prepared.form(choice)
    fp, fq, zero_point = int8_conv_layout(form, choice.terms, choice.weight_max)
    width = int8_conv_width(fp.shape[1])
    p = np.full((fp.shape[0], width), zero_point, dtype=np.int64)
    p[:, :fp.shape[1]] += fp
    q = np.zeros((fq.shape[0], width), dtype=np.int64)
    q[:, :fq.shape[1]] = fq
    dev = w_int.device
    table = torch.as_tensor(p, dtype=torch.uint8, device=dev).contiguous()
    q = torch.as_tensor(q, dtype=torch.int8, device=dev)
    cout, cin_g, kh, kw = w_int.shape
    weight = q[widx.long()].permute(0, 1, 4, 2, 3).reshape(cout, cin_g * width, kh, kw).contiguous()
    return WeightPlan(choice, None, form.denom, [], torch.float32, tuple(w_int.shape),
                      qconv=QConvWeight(table, zero_point, weight, groups))


def _interleaved(choice: Choice) -> bool:
    """Conv layout: `INTERLEAVE_MIN` terms or more are gathered as rows ``P[x]`` (one 2-D gather whose cost
    hardly grows with the row length) into a padded channels-last input; fewer terms by 1-D gathers."""
    return choice.rank >= INTERLEAVE_MIN


def plan_conv2d_weight(w_int: torch.Tensor, prepared: PreparedTable, groups: int = 1) -> WeightPlan:
    """Weight side of `approx_conv2d` for weight codes `w_int` ``(Cout, Cin/groups, kh, kw)``.

    Raises:
        ValueError: weight codes outside the format, or no exact float accumulation.
    """
    cout, cin_g, kh, kw = w_int.shape
    cout_g = cout // groups

    def batched(qw: torch.Tensor, r: int, choice: Choice) -> torch.Tensor:  # qw: (cout, cin_g, kh, kw, r)
        s = choice.slices
        if _interleaved(choice):  # input channels (channel, term), channels-last
            weight = qw.permute(0, 1, 4, 2, 3).reshape(cout, cin_g * r, kh, kw)
            if s > 1:
                weight = weight.reshape(groups, cout_g, s, cin_g // s * r, kh, kw).transpose(1, 2)
                weight = weight.reshape(groups * s * cout_g, cin_g // s * r, kh, kw)
            return weight.contiguous(memory_format=torch.channels_last)
        # input channels of conv group (g, slice) ordered (term, channel of the slice), NCHW
        weight = qw.reshape(groups, cout_g, s, cin_g // s, kh, kw, r).permute(0, 2, 1, 6, 3, 4, 5)
        return weight.reshape(groups * s * cout_g, r * cin_g // s, kh, kw).contiguous()

    weight_max = int8_conv_weight_max(w_int.device)
    plan = _plan(w_int, prepared, cin_g * kh * kw, cin_g, batched, int8=weight_max > 0, groups=groups,
                 weight_max=weight_max or INT8_WEIGHT_FULL)
    if plan.p is not None and plan.choice.rank:
        # d T[code 0, w] per weight, summed over input channels: the padded taps' share (see approx_conv2d)
        form = prepared.forms[plan.choice.form]
        terms = list(plan.choice.terms)
        zero = -prepared.fmt.a_range[0]
        zrow = torch.as_tensor(form.q[:, terms] @ form.p[zero, terms], dtype=torch.float64, device=w_int.device)
        widx = (w_int.detach() - prepared.fmt.w_range[0]).to(torch.long)
        if zrow.any():  # else (zero-preserving multipliers: T[0, v] == 0) padded taps add nothing
            plan.zero_taps = zrow[widx].sum(dim=1, keepdim=True)
    return plan


def plan_linear_weight(w_int: torch.Tensor, prepared: PreparedTable) -> WeightPlan:
    """Weight side of `approx_linear` for weight codes `w_int` ``(out_features, in_features)``: int8 digit-pair
    matmuls where ``torch._int_mm`` is fast, else possibly a 1x1 u8 x s8 conv (`qconv` set), else float.

    Raises:
        ValueError: weight codes outside the format, or no exact float accumulation.
    """
    cout, cin = w_int.shape
    dev = w_int.device

    def batched(qw: torch.Tensor, r: int, choice: Choice) -> torch.Tensor:  # qw: (cout, cin, r)
        s = choice.slices
        if s == 1:
            return qw.reshape(cout, cin * r).contiguous()
        return qw.reshape(cout, s, cin // s * r).permute(1, 2, 0).contiguous()

    if int8_available(dev):
        return _plan(w_int, prepared, cin, cin, batched, per_chunk=1, int8=True)
    weight_max = int8_conv_weight_max(dev)
    return _plan(w_int, prepared, cin, cin, batched, per_chunk=1, int8=weight_max > 0,
                 weight_max=weight_max or INT8_WEIGHT_FULL, linear_conv=True)


@torch.no_grad()
def approx_conv2d(
    x_int: torch.Tensor,
    w_int: torch.Tensor,
    prepared: PreparedTable,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    pad_taps: bool = True,
    plan: WeightPlan | None = None,
) -> torch.Tensor:
    """Approximate conv2d accumulator ``sum_k T(x_k, w_k)`` of activation and weight codes.

    Args:
        x_int: activation codes ``(N, Cin, H, W)`` (float tensor holding integers of the format).
        w_int: weight codes ``(Cout, Cin/groups, kh, kw)``.
        prepared: the multiplier, from `fames.emulation.plan.prepare`.
        stride, padding, dilation, groups: as in `torch.nn.functional.conv2d` (zero padding only;
            ``"same"`` only where it is symmetric).
        pad_taps: padded taps multiply activation code 0 (True) or are skipped (False).
        plan: `plan_conv2d_weight(w_int, prepared, groups)`, to reuse across calls (else made here).

    Returns:
        The exact integer accumulator ``(N, Cout, OH, OW)`` as float32, or float64 where float32
        cannot hold every partial sum exactly (see `fames.emulation.plan`).

    Raises:
        ValueError: codes outside the multiplier's format, or no exact float accumulation.

    Example:
        >>> from fames.emulation.plan import prepare
        >>> from fames.multipliers.appmul import AppMul
        >>> from fames.multipliers.formats import OperandFormat
        >>> m = AppMul.exact(OperandFormat.parse("u2xs2"))
        >>> x, w = torch.ones(1, 1, 3, 3), -torch.ones(1, 1, 3, 3)
        >>> approx_conv2d(x, w, prepare(m), padding=1)[0, 0, 1, 1].item()
        -9.0
    """
    ph, pw = _padding(padding, w_int.shape[-2:], dilation)
    plan = plan if plan is not None else plan_conv2d_weight(w_int, prepared, groups)
    cout = w_int.shape[0]
    n, cin, h, w = x_int.shape
    oh = (h + 2 * ph - _pair(dilation)[0] * (w_int.shape[-2] - 1) - 1) // _pair(stride)[0] + 1
    ow = (w + 2 * pw - _pair(dilation)[1] * (w_int.shape[-1] - 1) - 1) // _pair(stride)[1] + 1
    if plan.qconv is not None:
        a_lo, a_hi = prepared.fmt.a_range
        _check_range(x_int, a_lo, a_hi, "activation")
        return _conv_int8(x_int, plan, a_lo, stride, (ph, pw), dilation, pad_taps, oh, ow)
    if plan.p is None:
        with _exact_math(x_int.device):
            return F.conv2d(x_int.to(plan.dtype), w_int.to(plan.dtype), None, stride, (ph, pw), dilation, groups)
    if plan.choice.rank == 0:  # T == 0 on every code pair that occurs
        return torch.zeros((n, cout, oh, ow), dtype=plan.dtype, device=x_int.device)
    a_lo, a_hi = prepared.fmt.a_range
    _check_range(x_int, a_lo, a_hi, "activation")
    if _interleaved(plan.choice):
        return _conv_interleaved(x_int, w_int, plan, a_lo, stride, (ph, pw), dilation, groups, pad_taps, oh, ow)
    dev = x_int.device
    s = plan.choice.slices
    out_dtype = plan.dtype if s == 1 else torch.float64
    border = None
    if pad_taps and (ph or pw) and plan.zero_taps is not None:
        key = (h, w, ph, pw, _pair(stride), _pair(dilation), out_dtype)
        if key not in plan.borders:
            mask = torch.ones((1, 1, h + 2 * ph, w + 2 * pw), dtype=torch.float64, device=dev)
            mask[:, :, ph:ph + h, pw:pw + w] = 0
            plan.borders[key] = F.conv2d(mask, plan.zero_taps, None, stride, 0, dilation).to(out_dtype)
        border = plan.borders[key]
    per_sample = cin * h * w
    gs = groups * s  # conv groups: (group, input-channel slice)
    nb = _batch_chunk(n, per_sample, max(r for _, r, _ in plan.chunks), x_int.numel() + n * cout * oh * ow)
    out = None
    for b0 in range(0, n, nb):
        xb = x_int[b0:b0 + nb]
        m = xb.shape[0]
        idx = _code_indices(xb, a_lo)
        acc = None
        for t0, r, cached in plan.chunks:  # per chunk of r terms: r 1-D gathers (NCHW), one conv
            weight = plan.weight(t0, r, cached)
            gathered = _workspace(m * per_sample * r, plan.dtype, dev, "gather")
            if r == 1:
                torch.index_select(plan.p[:, t0].contiguous(), 0, idx, out=gathered)
            else:
                blocks = gathered.view(m, gs, r, cin // gs, h, w)
                tmp = _workspace(m * per_sample, plan.dtype, dev, "gather1")
                for t in range(r):
                    torch.index_select(plan.p[:, t0 + t].contiguous(), 0, idx, out=tmp)
                    blocks[:, :, t].copy_(tmp.view(m, gs, cin // gs, h, w))
            with _exact_math(dev):
                part = F.conv2d(gathered.view(m, r * cin, h, w), weight, None, stride, (ph, pw), dilation, gs)
            if s > 1:
                part = part.reshape(m, groups, s, cout // groups, oh, ow).sum(dim=2, dtype=torch.float64)
                part = part.reshape(m, cout, oh, ow)
            if acc is None:
                acc = part
            else:
                acc.add_(part)
        if border is not None:
            acc.add_(border)
        if nb >= n:
            out = acc
        else:
            if out is None:
                out = torch.empty((n, cout, oh, ow), dtype=out_dtype, device=dev)
            out[b0:b0 + m] = acc
    return _finish(out, plan.denom)


def _padded_channels_last(values: torch.Tensor, padding: tuple[int, int], dtype: torch.dtype, slot: str,
                          border: int) -> torch.Tensor:
    """`values` ``(N, C, H, W)`` cast into the reusable `slot` workspace as `dtype` ``(N, H + 2 ph, W + 2 pw, C)``,
    the `padding` border holding `border`."""
    ph, pw = padding
    m, cin, h, w = values.shape
    out = _workspace(m * (h + 2 * ph) * (w + 2 * pw) * cin, dtype, values.device, slot)
    out = out.view(m, h + 2 * ph, w + 2 * pw, cin)
    for edge in (out[:, :ph], out[:, ph + h:], out[:, :, :pw], out[:, :, pw + w:]):
        edge.fill_(border)
    out[:, ph:ph + h, pw:pw + w].copy_(values.permute(0, 2, 3, 1))
    return out


def _channels_last_indices(xb: torch.Tensor, a_lo: int, padding: tuple[int, int]) -> torch.Tensor:
    """Table indices ``code - a_lo`` of `xb` as int32 ``(N, H + 2 ph, W + 2 pw, C)`` in the reusable "idx"
    workspace, the `padding` border holding the index of code 0 (padded taps multiply code 0)."""
    idx = _padded_channels_last(xb, padding, torch.int32, "idx", -a_lo)
    if a_lo:
        ph, pw = padding
        idx[:, ph:ph + xb.shape[2], pw:pw + xb.shape[3]].sub_(a_lo)
    return idx


def _channels_last_affine(xb: torch.Tensor, scale: int, bias: int, padding: tuple[int, int]) -> torch.Tensor:
    """``scale * code + bias`` of `xb` as uint8 ``(N, H + 2 ph, W + 2 pw, C)`` in the reusable "gather"
    workspace, the `padding` border holding `bias` (code 0): what `QConvWeight.gather` gives for a table with
    `QConvWeight.affine`, at the cost of one cast (the codes were range-checked, so every value is in the
    table, within ``[0, 255]``, before it is cast)."""
    values = xb if (scale, bias) == (1, 0) else xb * scale + bias
    return _padded_channels_last(values, padding, torch.uint8, "gather", bias)


def _conv_interleaved(x_int: torch.Tensor, w_int: torch.Tensor, plan: WeightPlan, a_lo: int, stride,
                      padding: tuple[int, int], dilation, groups: int, pad_taps: bool, oh: int,
                      ow: int) -> torch.Tensor:
    """Many terms: the activation indices are laid out channels-last and padded with the index of code 0
    (``pad_taps``), then ``P[x]`` is gathered row-wise into ``R`` interleaved channel blocks per chunk."""
    ph, pw = padding
    cout = w_int.shape[0]
    n, cin, h, w = x_int.shape
    hp, wp = (h + 2 * ph, w + 2 * pw) if pad_taps else (h, w)
    per_sample = hp * wp * cin
    s = plan.choice.slices
    out = None
    for t0, r, cached in plan.chunks:
        weight = plan.weight(t0, r, cached)
        p = plan.p[:, t0:t0 + r]
        nb = _batch_chunk(n, per_sample, r, x_int.numel() + n * cout * oh * ow)
        for b0 in range(0, n, nb):
            xb = x_int[b0:b0 + nb]
            m = xb.shape[0]
            idx = _channels_last_indices(xb, a_lo, (ph, pw) if pad_taps else (0, 0))
            gathered = _workspace(idx.numel() * r, plan.dtype, x_int.device, "gather")
            torch.index_select(p, 0, idx.view(-1), out=gathered.view(-1, r))
            inp = gathered.view(m, hp, wp, cin * r).permute(0, 3, 1, 2)
            with _exact_math(x_int.device):
                part = F.conv2d(inp, weight, None, stride, (0, 0) if pad_taps else (ph, pw), dilation,
                                groups * s)
            if s > 1:
                part = part.reshape(m, groups, s, cout // groups, oh, ow).sum(dim=2, dtype=torch.float64)
                part = part.reshape(m, cout, oh, ow)
            if nb >= n and len(plan.chunks) == 1:
                out = part
            elif out is None:
                out = torch.empty((n, cout, oh, ow), dtype=part.dtype, device=x_int.device)
            if out is not part:
                if t0 == 0:
                    out[b0:b0 + m] = part
                else:
                    out[b0:b0 + m] += part
    return _finish(out, plan.denom)


def _conv_int8(x_int: torch.Tensor, plan: WeightPlan, a_lo: int, stride, padding: tuple[int, int], dilation,
               pad_taps: bool, oh: int, ow: int) -> torch.Tensor:
    """All terms as one u8 x s8 conv: the activation indices are laid out channels-last (padded with the index
    of code 0 when ``pad_taps``; else oneDNN pads with the zero point, i.e. 0) and ``P[x] + z`` is gathered
    row-wise into interleaved uint8 channel blocks."""
    ph, pw = padding
    q = plan.qconv
    n, cin, h, w = x_int.shape
    cout, r = q.weight.shape[0], q.width
    explicit = pad_taps and (ph or pw)
    hp, wp = (h + 2 * ph, w + 2 * pw) if explicit else (h, w)
    conv_padding = [0, 0] if explicit else [ph, pw]
    stride, dilation = list(_pair(stride)), list(_pair(dilation))
    packed = q.pack(stride, conv_padding, dilation)
    per_sample = hp * wp * cin
    # the gathered input is uint8: budget its bytes like the float paths' float32 elements
    nb = _batch_chunk(n, per_sample, r, 4 * (x_int.numel() + n * cout * oh * ow))
    out = None
    for b0 in range(0, n, nb):
        xb = x_int[b0:b0 + nb]
        m = xb.shape[0]
        if q.affine is None:
            idx = _channels_last_indices(xb, a_lo, (ph, pw) if explicit else (0, 0))
            gathered = _workspace(idx.numel() * r, torch.uint8, x_int.device, "gather")
            q.gather(idx.view(-1), gathered)
        else:
            scale, bias = q.affine
            gathered = _channels_last_affine(xb, scale, bias - scale * a_lo, (ph, pw) if explicit else (0, 0))
        inp = gathered.view(m, hp, wp, cin * r).permute(0, 3, 1, 2)
        part = qconv(inp, q.zero_point, packed, cout, stride, conv_padding, dilation, q.groups)
        if nb >= n:
            out = part
        else:
            if out is None:
                out = torch.empty((n, cout, oh, ow), dtype=part.dtype, device=x_int.device,
                                  memory_format=torch.channels_last)
            out[b0:b0 + m] = part
    return _finish(out, plan.denom)


@torch.no_grad()
def approx_linear(
    x_int: torch.Tensor, w_int: torch.Tensor, prepared: PreparedTable, plan: WeightPlan | None = None
) -> torch.Tensor:
    """Approximate linear accumulator ``sum_k T(x_k, w_k)``.

    Args:
        x_int: activation codes ``(..., in_features)``.
        w_int: weight codes ``(out_features, in_features)``.
        prepared: the multiplier, from `fames.emulation.plan.prepare`.
        plan: `plan_linear_weight(w_int, prepared)`, to reuse across calls (else made here).

    Returns:
        The exact accumulator ``(..., out_features)``, float32 or float64 (as `approx_conv2d`).

    Raises:
        ValueError: codes outside the multiplier's format, or no exact float accumulation.
    """
    plan = plan if plan is not None else plan_linear_weight(w_int, prepared)
    cout, cin = w_int.shape
    lead = x_int.shape[:-1]
    a_lo, a_hi = prepared.fmt.a_range
    if plan.blocks is not None:
        _check_range(x_int, a_lo, a_hi, "activation")  # before the reshape: a view is not the issued tensor
        return _linear_int8(x_int.reshape(-1, cin), w_int, prepared, plan).reshape(*lead, cout)
    if plan.qconv is not None:  # a 1x1 u8 x s8 conv over (M, K, 1, 1)
        _check_range(x_int, a_lo, a_hi, "activation")
        x4 = x_int.reshape(-1, cin, 1, 1)
        acc = _conv_int8(x4, plan, a_lo, stride=1, padding=(0, 0), dilation=1, pad_taps=False, oh=1, ow=1)
        return acc.reshape(*lead, cout)
    if plan.p is None:
        with _exact_math(x_int.device):
            return F.linear(x_int.to(plan.dtype), w_int.to(plan.dtype))
    if plan.choice.rank == 0:
        return torch.zeros(*lead, cout, dtype=plan.dtype, device=x_int.device)
    _check_range(x_int, a_lo, a_hi, "activation")
    x2 = x_int.reshape(-1, cin)
    m = x2.shape[0]
    s = plan.choice.slices
    out = torch.empty((m, cout), dtype=plan.dtype if s == 1 else torch.float64, device=x_int.device)
    nb = _batch_chunk(m, cin, max(r for _, r, _ in plan.chunks), x2.numel() + m * cout)
    for b0 in range(0, m, nb):
        xb = x2[b0:b0 + nb]
        mb = xb.shape[0]
        ob = out[b0:b0 + mb]
        idx = _code_indices(xb, a_lo).view(mb, cin)
        for i, (t0, r, cached) in enumerate(plan.chunks):  # one term per chunk: same-size matmuls
            weight = plan.weight(t0, r, cached)
            gathered = _workspace(mb * cin * r, plan.dtype, x_int.device, "gather")
            torch.index_select(plan.p[:, t0:t0 + r], 0, idx.view(-1), out=gathered.view(-1, r))
            with _exact_math(x_int.device):
                if s == 1:
                    g = gathered.view(mb, cin * r)
                    if i == 0:
                        torch.mm(g, weight.t(), out=ob)
                    else:
                        ob.addmm_(g, weight.t())
                else:
                    c = cin // s * r
                    part = torch.bmm(gathered.view(mb, s, c).transpose(0, 1), weight)
                    part = part.sum(dim=0, dtype=torch.float64)
                    if i == 0:
                        ob.copy_(part)
                    else:
                        ob.add_(part)
    return _finish(out, plan.denom).reshape(*lead, cout)


class _Int8Group:
    """Int32 partial sums of consecutive int8 blocks of one shift, added to the accumulator `acc` once per group;
    an `acc` of another dtype is reached through the reusable `wide` buffer of its dtype (a mixed-dtype add_
    allocates a temporary on every call)."""

    def __init__(self, acc: torch.Tensor, wide: torch.Tensor | None) -> None:
        self.acc, self.wide = acc, wide
        self.shift: int | None = None
        self.bound = 0
        self.first = True

    def slot(self, shift: int, bound: int, res: torch.Tensor, spare: torch.Tensor) -> torch.Tensor:
        """Where the next block's int32 product goes: `res` when it starts a group (the pending group, of
        another shift or full, is flushed first), else `spare`, which the caller then adds to `res`."""
        if self.shift is not None and (shift != self.shift or self.bound + bound >= 2**31):
            self.flush(res)
        if self.shift is None:
            self.shift, self.bound = shift, bound
            return res
        self.bound += bound
        return spare

    def flush(self, res: torch.Tensor) -> None:
        """Add the pending group, ``res * 256^shift``, to the accumulator."""
        if self.shift is None:
            return
        if self.first:
            self.acc.copy_(res)
            if self.shift:
                self.acc.mul_(256**self.shift)
            self.first = False
        elif self.wide is None:
            self.acc.add_(res, alpha=256**self.shift)
        else:
            self.wide.copy_(res)
            self.acc.add_(self.wide, alpha=256**self.shift)
        self.shift, self.bound = None, 0


def _indicator(codes: torch.Tensor, v: int, c: int) -> torch.Tensor:
    """``c [codes == v]`` as int8, in a workspace: ``1 - min(codes ^ v, 1)`` in vectorised uint8 passes (4x
    cheaper here than ``torch.eq`` into bool or a gather, neither of which is vectorised for one byte)."""
    hit = _workspace(codes.numel(), torch.uint8, codes.device, "windicator")
    torch.bitwise_xor(codes, v, out=hit)
    hit.clamp_(max=1).neg_().add_(1)
    out = hit.view(torch.int8)
    return out if c == 1 else out.mul_(c)


def _linear_int8(x2: torch.Tensor, w_int: torch.Tensor, prepared: PreparedTable, plan: WeightPlan) -> torch.Tensor:
    """``sum_blocks 256^shift * int8_mm(Pd[x], Qd[w]^T)`` accumulated exactly in int64, then converted to the
    output dtype (float32 only where the accumulator is below 2^24, as on the float path). Blocks of one shift
    are summed in int32 while their bound allows (``sum K nb 128^2 < 2^31``) and widened once, rather than
    each widened and added on its own (a u8xs4 random table's 32 pairs: 26 -> 21 ms)."""
    a_lo = prepared.fmt.a_range[0]
    m, cin = x2.shape
    cout = w_int.shape[0]
    dev = x2.device
    out = torch.empty((m, cout), dtype=plan.dtype if plan.choice.slices == 1 else torch.float64, device=dev)
    nb_max = max((blk.nb for blk in plan.blocks), default=1)
    nb = _batch_chunk(m, cin, nb_max, x2.numel() + m * cout)
    for b0 in range(0, m, nb):
        xb = x2[b0:b0 + nb]
        mb = xb.shape[0]
        idx = _code_indices(xb, a_lo)
        res = _workspace(mb * cout, torch.int32, dev, "int8res").view(mb, cout)
        single = len(plan.blocks) == 1 and plan.blocks[0].shift == 0
        if single:
            acc = res
        elif out.dtype == torch.float64:  # exact below 2^53 (the accumulate_dtype bound): no int64 buffer
            acc = out[b0:b0 + mb]
        else:
            acc = _workspace(mb * cout, plan.acc_dtype, dev, "int8acc").view(mb, cout)
        wide = None if acc.dtype == res.dtype else _workspace(mb * cout, acc.dtype, dev, "int8wide").view(mb, cout)
        group = None if single else _Int8Group(acc, wide)
        spare = _workspace(mb * cout, torch.int32, dev, "int8res2").view(mb, cout)
        for blk in plan.blocks:
            ga = _workspace(mb * cin * blk.nb, torch.int8, dev, "gather")
            torch.index_select(blk.ta, 0, idx, out=ga if blk.nb == 1 else ga.view(-1, blk.nb))
            wb = blk.b
            if wb is None and blk.indicator is not None:
                wb = _indicator(plan.wcodes, *blk.indicator)
            elif wb is None:
                wb = _workspace(cout * cin * blk.nb, torch.int8, dev, "wgather")
                torch.index_select(blk.tb, 0, plan.widx, out=wb if blk.nb == 1 else wb.view(-1, blk.nb))
            target = res if group is None else group.slot(blk.shift, cin * blk.nb * INT8_DIGIT_MAX, res, spare)
            torch._int_mm(ga.view(mb, cin * blk.nb), wb.view(cout, cin * blk.nb).t(), out=target)
            if target is not res:
                res.add_(target)
        if group is not None:
            group.flush(res)
        if plan.blocks:
            if acc.data_ptr() != out[b0:b0 + mb].data_ptr():
                out[b0:b0 + mb] = acc
        else:
            out[b0:b0 + mb] = 0
    return _finish(out, plan.denom)
