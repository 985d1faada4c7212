"""approx_conv2d / approx_linear against the brute-force unfold + gather reference (max abs diff 0)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from emulation_ref import counted_aminmax, random_appmul, random_codes, ref_conv2d, ref_linear, truncated_table

from fames.emulation.factor import check_form
from fames.emulation.functional import approx_conv2d, approx_linear
from fames.emulation.plan import F32_EXACT, F64_EXACT, accumulate_dtype, int8_weight_range, prepare
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat

# (x shape, w shape, stride, padding, dilation, groups)
CONVS = [
    ((2, 3, 5, 5), (4, 3, 1, 1), 1, 0, 1, 1),  # 1x1
    ((2, 3, 6, 6), (4, 3, 3, 3), 1, 0, 1, 1),  # 3x3
    ((2, 3, 7, 7), (4, 3, 3, 3), 2, 1, 1, 1),  # stride 2 + padding
    ((1, 2, 7, 6), (3, 2, 3, 2), 1, (2, 1), 1, 1),  # asymmetric padding
    ((1, 3, 9, 9), (2, 3, 3, 3), 1, 2, 2, 1),  # dilation
    ((2, 4, 6, 6), (6, 2, 3, 3), 1, 1, 1, 2),  # groups
    ((2, 4, 6, 6), (4, 1, 3, 3), 2, 1, 1, 4),  # depthwise
]
FORMATS = list(itertools.product(range(2, 9), range(2, 9), (False, True)))
KINDS = ("random", "trunc", "zero")


def _case(i: int, a_bits: int, w_bits: int, a_signed: bool):
    w_signed = (i % 5) != 0  # unsigned weights every fifth case (functional core only)
    fmt = OperandFormat(a_bits, a_signed, w_bits, w_signed)
    mul = random_appmul(fmt, np.random.default_rng(i), KINDS[i % 3])
    return fmt, mul


def _int8_conv(monkeypatch, on: bool) -> None:
    """Allow (the default, where the device has it) or forbid the oneDNN u8 x s8 conv path."""
    import fames.emulation.functional as fn

    monkeypatch.setattr(fn, "INT8_CONV", on)
    monkeypatch.setattr(fn, "_INT8_CONV_OK", {})


@pytest.mark.parametrize("int8_conv", [False, True])
@pytest.mark.parametrize("i", range(len(FORMATS)))
def test_conv_and_linear_match_reference(monkeypatch, i: int, int8_conv: bool) -> None:
    _int8_conv(monkeypatch, int8_conv)
    a_bits, w_bits, a_signed = FORMATS[i]
    fmt, mul = _case(i, a_bits, w_bits, a_signed)
    prepared = prepare(mul)
    gen = torch.Generator().manual_seed(i)
    for j in (i % len(CONVS), (i + 3) % len(CONVS)):
        xs, ws, stride, padding, dilation, groups = CONVS[j]
        x = random_codes(xs, *fmt.a_range, gen)
        w = random_codes(ws, *fmt.w_range, gen)
        pad_taps = (i + j) % 2 == 0
        got = approx_conv2d(x, w, prepared, stride, padding, dilation, groups, pad_taps)
        ref = ref_conv2d(x, w, mul.table, fmt, stride, padding, dilation, groups, pad_taps)
        assert got.shape == ref.shape
        assert (got.double() - ref.double()).abs().max().item() == 0, (fmt.name, j, pad_taps)
    x = random_codes((3, 2, 17), *fmt.a_range, gen)
    w = random_codes((5, 17), *fmt.w_range, gen)
    assert torch.equal(approx_linear(x, w, prepared).double(), ref_linear(x, w, mul.table, fmt).double())


@pytest.mark.parametrize("name", ["u2xs2", "s4xs4", "u8xs8"])
def test_exact_multiplier_is_plain_conv(name: str) -> None:
    fmt = OperandFormat.parse(name)
    prepared = prepare(AppMul.exact(fmt))
    assert prepared.is_exact and prepared.forms == ()
    gen = torch.Generator().manual_seed(1)
    x = random_codes((2, 3, 6, 6), *fmt.a_range, gen)
    w = random_codes((4, 3, 3, 3), *fmt.w_range, gen)
    assert torch.equal(approx_conv2d(x, w, prepared, 1, 1), F.conv2d(x, w, padding=1))
    xl, wl = x.flatten(1), random_codes((4, 108), *fmt.w_range, gen)
    assert torch.equal(approx_linear(xl, wl, prepared), F.linear(xl, wl))


def test_padding_semantics_zero_code_product() -> None:
    """T[0, v] != 0: padded taps count T[0, w] with pad_taps=True and nothing with pad_taps=False."""
    fmt = OperandFormat.parse("u4xs4")
    table = fmt.exact_table()
    table[0] = 3  # 0 x v -> 3
    mul = AppMul("zero3", fmt, table)
    x = torch.zeros(1, 1, 3, 3)
    w = torch.ones(1, 1, 3, 3)
    taps = approx_conv2d(x, w, prepare(mul), padding=1, pad_taps=True)
    skip = approx_conv2d(x, w, prepare(mul), padding=1, pad_taps=False)
    assert taps[0, 0].tolist() == [[27.0] * 3] * 3  # every one of the 9 taps returns 3
    assert skip[0, 0].tolist() == [[12.0, 18.0, 12.0], [18.0, 27.0, 18.0], [12.0, 18.0, 12.0]]
    ref = ref_conv2d(x, w, table, fmt, padding=1, pad_taps=False)
    assert torch.equal(skip.double(), ref.double())


@pytest.mark.parametrize("name", ["u8xs8", "s8xs8", "u6xs4", "s3xs5"])
def test_low_rank_structured_tables(name: str) -> None:
    fmt = OperandFormat.parse(name)
    k = (fmt.a_bits + fmt.w_bits) // 2
    mul = AppMul("trunc", fmt, truncated_table(fmt, k))
    prepared = prepare(mul)
    form = [f for f in prepared.forms if f.kind == "low-rank"]
    assert form, "truncation error has low rank"
    rank = form[0].rank - 1
    assert rank <= k  # E = -sum_{i+j<k} a_i w_j 2^(i+j) has rank <= k
    gen = torch.Generator().manual_seed(2)
    x = random_codes((2, 8, 6, 6), *fmt.a_range, gen)
    w = random_codes((4, 8, 3, 3), *fmt.w_range, gen)
    present = np.ones(fmt.shape[1], bool)
    choice = prepared.choose(present, 72, [1])
    assert prepared.forms[choice.form].kind == "low-rank"
    got = approx_conv2d(x, w, prepared, 1, 1)
    assert torch.equal(got.double(), ref_conv2d(x, w, mul.table, fmt, padding=1).double())


def test_all_forms_exact() -> None:
    rng = np.random.default_rng(5)
    for name, kind in [("u8xs8", "trunc"), ("s5xs3", "random"), ("u4xu4", "zero"), ("s2xs2", "trunc")]:
        mul = random_appmul(OperandFormat.parse(name), rng, kind)
        forms = prepare(mul).forms
        assert forms
        for form in forms:
            assert check_form(form, mul.table), (name, kind, form.name)


def test_random_full_rank_uses_present_weight_codes() -> None:
    fmt = OperandFormat.parse("s8xs8")
    mul = random_appmul(fmt, np.random.default_rng(3), "random")
    prepared = prepare(mul)
    assert not any(f.kind == "low-rank" for f in prepared.forms)
    gen = torch.Generator().manual_seed(3)
    x = random_codes((2, 4, 5, 5), *fmt.a_range, gen)
    w = random_codes((3, 4, 3, 3), -3, 3, gen)  # only 7 weight codes occur
    got = approx_conv2d(x, w, prepared, 1, 1)
    assert torch.equal(got.double(), ref_conv2d(x, w, mul.table, fmt, padding=1).double())
    choice = next(iter(prepared._choices.values()))
    assert choice.rank == 7


def test_accumulate_dtype_rule() -> None:
    assert accumulate_dtype(100, (F32_EXACT - 1) / 100, [1]) == (torch.float32, 1)
    assert accumulate_dtype(100, F32_EXACT / 100, [1, 2, 4]) == (torch.float32, 2)
    assert accumulate_dtype(100, F32_EXACT / 100, [1]) == (torch.float64, 1)
    assert accumulate_dtype(100, F64_EXACT / 100, [1]) is None
    # float32 really loses integers at 2^24: why the rule exists
    assert torch.tensor(float(F32_EXACT + 1), dtype=torch.float32).item() != F32_EXACT + 1


def test_large_accumulators_stay_exact() -> None:
    """K * bound >= 2^24: float32 over channel slices (conv) and float64 (prime in_features)."""
    fmt = OperandFormat.parse("s8xs8")
    mul = random_appmul(fmt, np.random.default_rng(4), "random")
    prepared = prepare(mul)
    gen = torch.Generator().manual_seed(4)
    x = torch.full((1, 256, 3, 3), -128.0)
    x[0, :, 1, 1] = random_codes((256,), *fmt.a_range, gen)
    w = torch.full((2, 256, 3, 3), -128.0)
    got = approx_conv2d(x, w, prepared, 1, 1)
    ref = ref_conv2d(x, w, mul.table, fmt, padding=1)
    assert ref.abs().max() >= F32_EXACT
    assert got.dtype == torch.float64 and torch.equal(got, ref.double())
    xl = random_codes((2, 1031), -128, -120, gen)
    wl = random_codes((3, 1031), -128, -120, gen)
    got = approx_linear(xl, wl, prepared)
    assert got.dtype == torch.float64 and torch.equal(got, ref_linear(xl, wl, mul.table, fmt).double())


def test_codes_out_of_range_raise() -> None:
    fmt = OperandFormat.parse("u2xs2")
    prepared = prepare(AppMul("t", fmt, fmt.exact_table() + 1))
    with pytest.raises(ValueError, match="activation codes"):
        approx_conv2d(torch.full((1, 1, 3, 3), 4.0), torch.ones(1, 1, 1, 1), prepared)
    with pytest.raises(ValueError, match="weight codes"):
        approx_linear(torch.ones(1, 3), torch.full((1, 3), 2.0), prepared)


@pytest.mark.parametrize("linear", [False, True])
def test_codes_a_quantizer_clamped_skip_the_range_read(monkeypatch, linear: bool) -> None:
    """Codes a quantizer just clamped into the format's range are not read again (and give the reference);
    the same codes changed in place, a copy, or codes from a wider quantizer are checked and refused."""
    import fames.emulation.functional as fn
    from fames.quant.lsq import LsqQuantizer

    fmt = OperandFormat.parse("u4xs2")
    mul = random_appmul(fmt, np.random.default_rng(3))
    prepared = prepare(mul)
    gen = torch.Generator().manual_seed(5)
    w = random_codes((3, 4) if linear else (3, 4, 3, 3), *fmt.w_range, gen)
    plan = fn.plan_linear_weight(w, prepared) if linear else fn.plan_conv2d_weight(w, prepared, 1)
    op = (lambda c, *a: approx_linear(c, *a, plan=plan)) if linear else (
        lambda c, *a: approx_conv2d(c, *a, plan=plan))
    ref = ref_linear if linear else ref_conv2d
    quant = LsqQuantizer(4, signed=False)
    x = torch.rand((2, 4) if linear else (2, 4, 5, 5), generator=gen) * 3
    codes, _ = quant(x)
    calls = counted_aminmax(monkeypatch)
    assert torch.equal(op(codes, w, prepared).double(), ref(codes, w, mul.table, fmt).double())
    assert calls[0] == 0
    assert codes.max() > 0  # the test is not vacuous
    with pytest.raises(ValueError, match="activation codes"):
        op(codes.clone().add_(16), w, prepared)
    codes.add_(16)  # in place: the version counter moves
    with pytest.raises(ValueError, match="activation codes"):
        op(codes, w, prepared)
    wide, _ = LsqQuantizer(8, signed=False)(x * 40)
    assert wide.max() > fmt.a_range[1]
    with pytest.raises(ValueError, match="activation codes"):
        op(wide, w, prepared)
    assert calls[0] == 3


def test_batch_chunking_is_exact(monkeypatch) -> None:
    """Tiny gather budget: the batch is processed in many chunks, result unchanged."""
    import fames.emulation.functional as fn

    _int8_conv(monkeypatch, False)
    monkeypatch.setattr(fn, "MIN_BUDGET", 0)
    monkeypatch.setattr(fn, "GATHER_BUDGET", 0.3)
    monkeypatch.setattr(fn, "WEIGHT_BUDGET", 0)  # one term per chunk
    fmt = OperandFormat.parse("s4xs4")
    mul = random_appmul(fmt, np.random.default_rng(6), "random")
    gen = torch.Generator().manual_seed(6)
    x = random_codes((5, 2, 5, 5), *fmt.a_range, gen)
    w = random_codes((3, 2, 3, 3), *fmt.w_range, gen)
    plan = fn.plan_conv2d_weight(w, prepare(mul))
    assert len(plan.chunks) > 2
    got = approx_conv2d(x, w, prepare(mul), 1, 1, plan=plan)
    assert torch.equal(got.double(), ref_conv2d(x, w, mul.table, fmt, padding=1).double())
    xl, wl = random_codes((7, 11), *fmt.a_range, gen), random_codes((4, 11), *fmt.w_range, gen)
    got = approx_linear(xl, wl, prepare(mul))
    assert torch.equal(got.double(), ref_linear(xl, wl, mul.table, fmt).double())


def test_string_padding() -> None:
    fmt = OperandFormat.parse("u3xs3")
    mul = random_appmul(fmt, np.random.default_rng(7), "zero")
    gen = torch.Generator().manual_seed(7)
    x = random_codes((1, 2, 5, 5), *fmt.a_range, gen)
    w = random_codes((2, 2, 3, 3), *fmt.w_range, gen)
    same = approx_conv2d(x, w, prepare(mul), padding="same")
    assert torch.equal(same.double(), ref_conv2d(x, w, mul.table, fmt, padding=1).double())
    valid = approx_conv2d(x, w, prepare(mul), padding="valid")
    assert torch.equal(valid.double(), ref_conv2d(x, w, mul.table, fmt).double())
    with pytest.raises(ValueError, match="asymmetric"):
        approx_conv2d(x, random_codes((2, 2, 2, 2), *fmt.w_range, gen), prepare(mul), padding="same")


def test_slices_with_groups() -> None:
    """float32 over input-channel slices combined with grouped conv."""
    fmt = OperandFormat.parse("s8xs8")
    mul = random_appmul(fmt, np.random.default_rng(8), "random")
    gen = torch.Generator().manual_seed(8)
    x = torch.full((1, 512, 3, 3), -128.0)
    x[0, :, 1, 1] = random_codes((512,), *fmt.a_range, gen)
    w = torch.full((4, 256, 3, 3), -128.0)
    w[:, :8] = random_codes((4, 8, 3, 3), *fmt.w_range, gen)
    prepared = prepare(mul)
    plan = __import__("fames.emulation.functional", fromlist=["x"]).plan_conv2d_weight(w, prepared, 2)
    assert plan.choice.slices > 1 and plan.dtype == torch.float32
    got = approx_conv2d(x, w, prepared, 1, 1, 1, 2, plan=plan)
    assert torch.equal(got, ref_conv2d(x, w, mul.table, fmt, padding=1, groups=2).double())


def test_linear_slices() -> None:
    fmt = OperandFormat.parse("s8xs8")
    mul = random_appmul(fmt, np.random.default_rng(9), "random")
    gen = torch.Generator().manual_seed(9)
    xl = random_codes((3, 1024), -128, -120, gen)
    wl = random_codes((2, 1024), -128, -120, gen)
    plan = __import__("fames.emulation.functional", fromlist=["x"]).plan_linear_weight(wl, prepare(mul))
    assert plan.choice.slices > 1 and plan.dtype == torch.float32
    got = approx_linear(xl, wl, prepare(mul), plan=plan)
    assert torch.equal(got, ref_linear(xl, wl, mul.table, fmt).double())


def _force_int8_linear(monkeypatch) -> None:
    """Run linear layers on ``torch._int_mm`` wherever it is exact, even where it is slower than float32 (which
    `int8_available` declines, e.g. CPUs without VNNI); skips where it is not exact."""
    import fames.emulation.functional as fn

    if not fn.int_mm_exact(torch.device("cpu")):
        pytest.skip("no exact int8 matmul on this CPU build")
    monkeypatch.setattr(fn, "INT8_LINEAR", True)
    monkeypatch.setitem(fn._INT8_OK, "cpu", True)


@pytest.mark.parametrize("int8", [False, True])
def test_linear_float_and_int8_paths_match_reference(monkeypatch, int8: bool) -> None:
    """Linear layers run as float matmuls or as exact int8 digit-pair matmuls: both bit-exact."""
    import fames.emulation.functional as fn

    monkeypatch.setattr(fn, "INT8_LINEAR", int8)
    monkeypatch.setattr(fn, "_INT8_OK", {})
    _int8_conv(monkeypatch, False)  # not as a 1x1 int8 conv either (`test_linear_as_int8_conv_matches_reference`)
    if int8:
        _force_int8_linear(monkeypatch)
    int8_plans = 0
    for i, (a_bits, w_bits, a_signed) in enumerate(FORMATS):
        fmt, mul = _case(i, a_bits, w_bits, a_signed)
        prepared = prepare(mul)
        gen = torch.Generator().manual_seed(100 + i)
        x = random_codes((6, 23), *fmt.a_range, gen)
        w = random_codes((5, 23), *fmt.w_range, gen)
        plan = fn.plan_linear_weight(w, prepared)
        if not int8:
            assert plan.blocks is None
        int8_plans += plan.blocks is not None
        got = approx_linear(x, w, prepared, plan=plan)
        assert torch.equal(got.double(), ref_linear(x, w, mul.table, fmt).double()), fmt.name
    assert (int8_plans > 0) == int8


def _uncached_int8_linear(monkeypatch, mul: AppMul, k: int, seed: int):
    """`mul` on a ``(9, k) x (7, k)`` linear layer through the int8 path with one digit pair per block,
    nothing cached and several batch chunks: asserts it bit-exact against the brute-force reference and
    returns the weight plan (skips where the CPU build has no int8 matmul)."""
    import fames.emulation.functional as fn

    _force_int8_linear(monkeypatch)
    monkeypatch.setattr(fn, "INT8_BLOCK", 1)
    monkeypatch.setattr(fn, "INT8_CACHE", 0.0)
    monkeypatch.setattr(fn, "MIN_BUDGET", 0)
    monkeypatch.setattr(fn, "GATHER_BUDGET", 0.3)
    prepared = prepare(mul)
    gen = torch.Generator().manual_seed(seed)
    x = random_codes((9, k), *mul.fmt.a_range, gen)
    w = random_codes((7, k), *mul.fmt.w_range, gen)
    plan = fn.plan_linear_weight(w, prepared)
    assert plan.blocks is not None and all(b.b is None and b.nb == 1 for b in plan.blocks)
    got = approx_linear(x, w, prepared, plan=plan)
    assert torch.equal(got.double(), ref_linear(x, w, mul.table, mul.fmt).double())
    return plan, prepared


def test_int8_digits_shifts_and_uncached_blocks(monkeypatch) -> None:
    """Multi-digit factors (shifted digit pairs), one pair per block, nothing cached, batch chunks."""
    from fames.emulation.plan import byte_digits, int8_pairs

    v = np.array([0, 1, -1, 127, 128, -128, -129, 255, 256, 40000, -70000, 2**40 + 3])
    digits = byte_digits(v)
    assert all(d.min() >= -128 and d.max() <= 127 for d in digits)
    assert np.array_equal(sum(d.astype(np.int64) * 256**i for i, d in enumerate(digits)), v)
    fmt = OperandFormat.parse("u8xs8")
    plan, prepared = _uncached_int8_linear(monkeypatch, AppMul("trunc", fmt, truncated_table(fmt, 8)), 40, 11)
    assert max(b.shift for b in plan.blocks) >= 1
    assert len(int8_pairs(prepared.forms[plan.choice.form], plan.choice.terms)) == len(plan.blocks)


def test_int8_same_shift_blocks_summed_in_int32(monkeypatch) -> None:
    """A random u8xs4 table (16 weight codes x 2 digits: 32 pairs in two shifts), blocks uncached and in
    batch chunks: the same-shift blocks summed in int32 before widening give the brute-force result."""
    mul = random_appmul(OperandFormat.parse("u8xs4"), np.random.default_rng(5))
    plan, _ = _uncached_int8_linear(monkeypatch, mul, 300, 12)
    assert plan.acc_dtype == torch.int64
    assert len({b.shift for b in plan.blocks}) == 2 and len(plan.blocks) > 16


def test_int8_indicator_weight_digit_matches_comparison() -> None:
    """`_indicator` gives ``c [codes == v]`` for every code, including 0 and 255, and any int8 ``c``."""
    import fames.emulation.functional as fn

    codes = torch.arange(256, dtype=torch.uint8).repeat(3)
    for v in (0, 1, 7, 128, 255):
        for c in (1, -1, 3, -128, 127):
            got = fn._indicator(codes, v, c).clone()
            assert got.dtype == torch.int8
            assert torch.equal(got, (codes == v).to(torch.int8) * c), (v, c)


def test_int8_indicator_and_gathered_blocks_together(monkeypatch) -> None:
    """A table exact but at two weight codes takes a w-split/error form: the exact term's weight digit is
    gathered, the error terms' digits ``[w == v]`` are made by comparison; both kinds in one layer, and a
    random u8xs4 table whose 32 blocks are all comparisons (no int32 indices kept), are bit-exact."""
    fmt = OperandFormat.parse("u8xs4")
    table = fmt.exact_table().copy()
    rng = np.random.default_rng(3)
    for code, high in ((3, 301), (5, 0)):  # code 5's error is never positive: its sign flips, c = -1
        table[:, code - fmt.w_range[0]] += rng.integers(-300, high, size=table.shape[0])
    plan, _ = _uncached_int8_linear(monkeypatch, AppMul("two_columns", fmt, table), 60, 13)
    kinds = {b.indicator is not None for b in plan.blocks}
    assert kinds == {True, False} and plan.widx is not None and plan.wcodes is not None
    assert {b.indicator[1] for b in plan.blocks if b.indicator} == {1, -1}
    mul = random_appmul(fmt, np.random.default_rng(5))
    plan, _ = _uncached_int8_linear(monkeypatch, mul, 50, 14)
    assert all(b.indicator is not None for b in plan.blocks) and plan.widx is None


def test_int8_group_flushes_before_int32_can_overflow() -> None:
    """`_Int8Group` starts a new group when the int32 bound would reach 2^31: products near 2^30 each are
    widened before they are added, so the sum is exact; a new shift also starts a new group."""
    from fames.emulation.functional import _Int8Group

    acc = torch.zeros(3, dtype=torch.int64)
    group = _Int8Group(acc, torch.empty(3, dtype=torch.int64))
    res, spare = torch.empty(3, dtype=torch.int32), torch.empty(3, dtype=torch.int32)
    blocks = [(0, [2**30 + 5, -(2**30) - 5, 5]), (0, [2**30 + 7, -(2**30) - 9, 7]), (0, [1, 2, 3]), (1, [1, -1, 2])]
    bound = 2**30  # each block's own bound: two of them do not fit in int32 together
    for shift, values in blocks:
        target = group.slot(shift, bound, res, spare)
        target.copy_(torch.tensor(values, dtype=torch.int32))
        if target is not res:  # as `_linear_int8` does
            res.add_(target)
    group.flush(res)
    expected = sum(torch.tensor(v, dtype=torch.int64) * 256**s for s, v in blocks)
    assert torch.equal(acc, expected)


def _error_in_columns(fmt: OperandFormat, cols: int, rng: np.random.Generator) -> AppMul:
    """Exact table plus small errors (both signs) in the first `cols` weight columns: w-split/error has
    ``cols + 1`` terms, the activation side takes negative values (a non-zero zero point)."""
    table = fmt.exact_table()
    table[:, :cols] += rng.integers(-6, 7, size=(table.shape[0], cols))
    return AppMul(f"cols{cols}", fmt, table)


WEIGHT_MAXES = (128, 64)  # the int8 conv's weight range with VNNI, and without (AVX2: |Q| <= 64)


def _force_weight_max(monkeypatch, weight_max: int) -> None:
    """Run the u8 x s8 conv path with its weight side within `weight_max` (`int8_weight_range`): the pair-safe
    range is exact wherever the full one is, so a VNNI CPU tests the AVX2 layouts too. Skips where the CPU
    build has no conv that exact."""
    import fames.emulation.functional as fn

    if fn.int8_conv_weight_max(torch.device("cpu")) < weight_max:
        pytest.skip(f"no oneDNN u8 x s8 conv exact for weights up to {weight_max} on this CPU build")
    monkeypatch.setitem(fn._INT8_CONV_OK, "cpu", weight_max)


@pytest.mark.parametrize("weight_max", WEIGHT_MAXES)
def test_linear_as_int8_conv_matches_reference(monkeypatch, weight_max: int) -> None:
    """Where the int8 matmul is slow (declined) but the u8 x s8 conv is exact, linear layers the cost model
    gives to that conv run as a 1x1 conv: bit-exact for every format, leading batch dims, exact multipliers."""
    import fames.emulation.functional as fn

    _force_weight_max(monkeypatch, weight_max)
    monkeypatch.setitem(fn._INT8_OK, "cpu", False)
    q_lo, q_hi = int8_weight_range(weight_max)
    conv_plans = 0
    for i, (a_bits, w_bits, a_signed) in enumerate(FORMATS):
        fmt, mul = _case(i, a_bits, w_bits, a_signed)
        for m in (mul, AppMul.exact(fmt)) if i % 4 == 0 else (mul,):
            prepared = prepare(m)
            gen = torch.Generator().manual_seed(200 + i)
            k = (23, 300)[i % 2]
            x = random_codes((2, 3, k), *fmt.a_range, gen)
            w = random_codes((5, k), *fmt.w_range, gen)
            plan = fn.plan_linear_weight(w, prepared)
            assert plan.blocks is None
            if plan.qconv is not None:
                conv_plans += 1
                assert q_lo <= int(plan.qconv.weight.min()) and int(plan.qconv.weight.max()) <= q_hi
            got = approx_linear(x, w, prepared, plan=plan)
            assert got.shape == (2, 3, 5)
            assert torch.equal(got.double(), ref_linear(x, w, m.table, fmt).double()), (m.name, fmt.name)
    assert conv_plans > len(FORMATS) // 2


def _int8_conv_plans(monkeypatch, muls: list[AppMul], seed: int, weight_max: int | None = None) -> list:
    """Every multiplier of `muls` on every shape of `CONVS` through the u8 x s8 conv path (weight side within
    `weight_max`, default: what the CPU allows), both padding semantics, in one batch chunk and in many:
    asserts each bit-exact against the brute-force reference and returns the weight plans (skips where the
    CPU build has no exact oneDNN u8 x s8 conv)."""
    import fames.emulation.functional as fn
    from fames.emulation.plan import int8_weight_range

    if not fn.int8_conv_available(torch.device("cpu")):
        pytest.skip("no exact oneDNN u8 x s8 conv on this CPU build")
    if weight_max is not None:
        _force_weight_max(monkeypatch, weight_max)
    q_lo, q_hi = int8_weight_range(fn.int8_conv_weight_max(torch.device("cpu")))
    gen = torch.Generator().manual_seed(seed)
    plans = []
    for chunked in (False, True):
        if chunked:
            monkeypatch.setattr(fn, "MIN_BUDGET", 0)
            monkeypatch.setattr(fn, "GATHER_BUDGET", 0.05)
        for mul in muls:
            prepared = prepare(mul)
            for j, (xs, ws, stride, padding, dilation, groups) in enumerate(CONVS):
                x = random_codes(xs, *mul.fmt.a_range, gen)
                w = random_codes(ws, *mul.fmt.w_range, gen)
                plan = fn.plan_conv2d_weight(w, prepared, groups)
                assert plan.qconv is not None, (mul.name, j)
                assert q_lo <= int(plan.qconv.weight.min()) and int(plan.qconv.weight.max()) <= q_hi
                plans.append(plan)
                for pad_taps in (True, False):
                    got = approx_conv2d(x, w, prepared, stride, padding, dilation, groups, pad_taps, plan)
                    ref = ref_conv2d(x, w, mul.table, mul.fmt, stride, padding, dilation, groups, pad_taps)
                    assert torch.equal(got.double(), ref.double()), (mul.name, j, pad_taps, chunked)
    return plans


@pytest.mark.parametrize("weight_max", WEIGHT_MAXES)
def test_int8_conv_widths_zero_points_padding_and_chunks(monkeypatch, weight_max: int) -> None:
    """The u8 x s8 conv path: 1, 2, 4 and 8 packed bytes per code (3, 5 terms padded with zero terms), a row
    gather beyond 8 terms, non-zero zero points, both padding semantics, groups, stride, dilation and batch
    chunks: all bit-exact against the brute-force reference."""
    fmt = OperandFormat.parse("u4xs4")
    rng = np.random.default_rng(12)
    muls = [AppMul("trunc1", fmt, truncated_table(fmt, 1))] + [_error_in_columns(fmt, c, rng) for c in (1, 2, 4, 11)]
    muls.append(AppMul("signed", OperandFormat.parse("s4xs4"), truncated_table(OperandFormat.parse("s4xs4"), 2)))
    plans = _int8_conv_plans(monkeypatch, muls, 12, weight_max)
    widths = {plan.qconv.width for plan in plans}
    assert {1, 2, 4, 8} <= widths and max(widths) > 8
    assert len({plan.qconv.zero_point for plan in plans}) > 1


@pytest.mark.parametrize("weight_max", WEIGHT_MAXES)
def test_int8_conv_exact_activation_side_skips_the_gather(monkeypatch, weight_max: int) -> None:
    """Tables whose one activation column is affine in the code (the exact multiplier, unsigned and signed codes,
    and a multiplier that errs on the weight side only) feed the conv the codes so mapped, without a gather: bit-exact
    against the reference with both padding semantics, in one chunk and in many; others keep the gather. In the
    pair-safe weight range the 8-bit weights split into two columns beside one activation column, which is then
    gathered (still bit-exact)."""
    import fames.emulation.functional as fn

    muls = [AppMul.exact(OperandFormat.parse(name)) for name in ("u4xs3", "s4xs4", "u8xs8")]
    fmt = OperandFormat.parse("u4xs4")
    weight_side = fmt.exact_table()
    weight_side[:, 1::2] = weight_side[:, 0::2]  # the weight's lowest bit dropped: P stays the codes
    muls.append(AppMul("wtrunc", fmt, weight_side))
    plans = _int8_conv_plans(monkeypatch, muls, 5, weight_max)
    wide = [plan.qconv.width == 2 for plan in plans]  # u8xs8's weight in the pair-safe range: Q_a + Q_b
    assert any(wide) == (weight_max < 128)
    assert all((plan.qconv.affine is None) == w for plan, w in zip(plans, wide, strict=True))
    gen = torch.Generator().manual_seed(5)
    trunc = prepare(AppMul("trunc1", fmt, truncated_table(fmt, 1)))
    plan = fn.plan_conv2d_weight(random_codes((4, 3, 3, 3), *fmt.w_range, gen), trunc, 1)
    assert plan.qconv is not None and plan.qconv.affine is None


def test_factor_signs_chosen_for_integer_units(monkeypatch) -> None:
    """``T = (a & ~7) w`` factors as ``P = -(a & ~7)``, ``Q = -w`` as readily as with both signs flipped, but
    ``-w`` spans ``[-127, 128]``: flipped it is 2 int8 digit pairs instead of 4 and fits a u8 x s8 conv. Both
    integer paths stay bit-exact and every term's product is unchanged."""
    from fames.emulation.plan import int8_conv_columns, int8_factors, int8_pairs

    fmt = OperandFormat.parse("u8xs8")
    mul = AppMul("drop3", fmt, np.outer(fmt.a_codes() & ~7, fmt.w_codes()))
    prepared = prepare(mul)
    for form in prepared.forms:
        terms = tuple(range(form.p.shape[1]))
        p, q = int8_factors(form, terms)
        assert all(np.array_equal(np.outer(p[:, t], q[:, t]), np.outer(form.p[:, t], form.q[:, t]))
                   for t in terms)
    form = next(f for f in prepared.forms if f.kind == "low-rank" and f.rank == 1)
    assert len(int8_pairs(form, (0,))) == 2
    assert int8_conv_columns(form, (0,), 27)[2] == 0  # zero point 0
    plan, _ = _uncached_int8_linear(monkeypatch, mul, 40, 17)
    assert len(plan.blocks) == 2
    for weight_max in WEIGHT_MAXES:  # asserts the u8 x s8 conv path is taken, and bit-exact
        _int8_conv_plans(monkeypatch, [mul], 17, weight_max)


@pytest.mark.parametrize("weight_max", WEIGHT_MAXES)
def test_int8_conv_splits_wide_activation_factors(monkeypatch, weight_max: int) -> None:
    """Factors wider than a byte run as base-256 digits in one u8 x s8 conv (``P = L + 256 H``, the high
    digit scaled against its weight): every layout keeps ``P' Q'^T == P Q^T`` within the int8 ranges, and a
    u8xs4 random table (16 terms spanning thousands) runs bit-exact as one conv with its terms split."""
    from fames.emulation.plan import int8_conv_layout, int8_weight_range

    rng = np.random.default_rng(4)
    muls = [random_appmul(OperandFormat.parse(name), rng) for name in ("u8xs4", "u4xs4", "s4xs2")]
    q_lo, q_hi = int8_weight_range(weight_max)
    for mul in muls:
        for form in prepare(mul).forms:
            terms = tuple(range(form.p.shape[1]))
            layout = int8_conv_layout(form, terms, weight_max)
            if layout is None:
                continue
            p, q, z = layout
            assert 0 <= z <= 255 and (p + z).min() >= 0 and (p + z).max() <= 255
            assert q.min() >= q_lo and q.max() <= q_hi
            assert np.array_equal(p @ q.T, form.p @ form.q.T)
    [plan, *_] = _int8_conv_plans(monkeypatch, muls[:1], 4, weight_max)  # bit-exact, both paddings, chunked or not
    assert plan.qconv.width > plan.choice.rank > 8


def test_int8_conv_declines_what_it_cannot_hold_exactly(monkeypatch) -> None:
    """Activation factors spanning more than 255 whatever their signs, or sums that float32 cannot hold:
    the float path."""
    import fames.emulation.functional as fn
    from fames.emulation.plan import int8_conv_columns

    if not fn.int8_conv_available(torch.device("cpu")):
        pytest.skip("no exact oneDNN u8 x s8 conv on this CPU build")
    fmt = OperandFormat.parse("u8xs8")
    table = fmt.exact_table()
    table[:, 5 - fmt.w_range[0]] += np.where(np.arange(256) % 2 == 0, 1, -1)  # error +-1 where w == 5
    mul = AppMul("alternating", fmt, table)
    prepared = prepare(mul)
    gen = torch.Generator().manual_seed(13)
    x = random_codes((2, 3, 5, 5), *fmt.a_range, gen)
    w = random_codes((2, 3, 3, 3), *fmt.w_range, gen)
    w[0, 0, 0, 0] = 5
    plan = fn.plan_conv2d_weight(w, prepared)
    form = prepared.forms[plan.choice.form]
    assert plan.choice.rank == 2  # the exact term u (0..255) and the error term (-1 or 1): P spans 257
    assert int8_conv_columns(form, plan.choice.terms, 27) is None
    assert plan.qconv is None
    assert torch.equal(approx_conv2d(x, w, prepared, 1, 1, plan=plan).double(),
                       ref_conv2d(x, w, mul.table, fmt, padding=1).double())
    small = prepare(_error_in_columns(OperandFormat.parse("u4xs4"), 2, np.random.default_rng(1)))
    choice_form = small.forms[small.choose(np.ones(16, bool), 9, [1], int8_conv=True).form]
    terms = tuple(range(choice_form.rank))
    assert int8_conv_columns(choice_form, terms, 9) is not None
    assert int8_conv_columns(choice_form, terms, 2**24) is None  # K * bound >= 2^24


def test_int8_conv_off_uses_the_float_path(monkeypatch) -> None:
    import fames.emulation.functional as fn

    _int8_conv(monkeypatch, False)
    mul = _error_in_columns(OperandFormat.parse("u4xs4"), 2, np.random.default_rng(2))
    w = random_codes((4, 3, 3, 3), -8, 7, torch.Generator().manual_seed(2))
    assert fn.plan_conv2d_weight(w, prepare(mul)).qconv is None


def test_int8_conv_pair_safe_weights_split_into_two_columns() -> None:
    """Below the full int8 range (AVX2: |Q| <= 64) a weight factor that leaves it runs as two columns beside the
    same activation column, ``Q = Q_a + Q_b``, each within ``[-64, 64]``: the exact u8xs8 multiplier (``Q = w``
    spans ``[-128, 127]``) takes two columns where the full range takes one, a 4-bit one still one, and every
    layout keeps ``P' Q'^T == P Q^T`` (on the identity factors and on random 8-bit tables' forms)."""
    from fames.emulation.plan import INT8_WEIGHT_PAIR_SAFE, int8_conv_layout

    exact = prepare(AppMul.exact(OperandFormat.parse("u8xs8")))
    identity = exact.form(exact.choose(None, 9, []))
    full, safe = int8_conv_layout(identity, (0,)), int8_conv_layout(identity, (0,), INT8_WEIGHT_PAIR_SAFE)
    assert full[1].shape[1] == 1 and safe[1].shape[1] == 2
    assert np.abs(safe[1]).max() <= 64 and np.array_equal(safe[0] @ safe[1].T, identity.p @ identity.q.T)
    small = prepare(AppMul.exact(OperandFormat.parse("u4xs4")))
    assert int8_conv_layout(small.form(small.choose(None, 9, [])), (0,), INT8_WEIGHT_PAIR_SAFE)[1].shape[1] == 1
    rng = np.random.default_rng(8)
    checked = 0
    for name in ("u8xs8", "s8xs8", "u4xs8"):
        for form in prepare(random_appmul(OperandFormat.parse(name), rng, "trunc")).forms:
            terms = tuple(range(form.p.shape[1]))
            layout = int8_conv_layout(form, terms, INT8_WEIGHT_PAIR_SAFE)
            if layout is not None:
                p, q, _ = layout
                assert np.abs(q).max() <= 64 and np.array_equal(p @ q.T, form.p @ form.q.T)
                checked += 1
    assert checked


def test_int8_conv_self_check_finds_the_weight_range(monkeypatch) -> None:
    """`int8_conv_weight_max` is the widest range whose self-check passes: the full one where it does, else the
    pair-safe one, else 0 (the float path); and the pair-safe check passes wherever the full one does."""
    import fames.emulation.functional as fn

    for results, expected in (((True, True), 128), ((False, True), 64), ((False, False), 0)):
        monkeypatch.setattr(fn, "_qconv_exact", lambda m, r=results: r[0] if m == 128 else r[1])
        monkeypatch.setattr(fn, "_INT8_CONV_OK", {})
        assert fn.int8_conv_weight_max(torch.device("cpu")) == expected
        assert fn.int8_conv_available(torch.device("cpu")) == (expected > 0)
    monkeypatch.undo()
    if fn.int8_conv_available(torch.device("cpu")):
        assert fn._qconv_exact(64)


def test_int8_linear_declined_where_slower_than_float(monkeypatch) -> None:
    """`int8_available` takes the int8 matmul only where it is exact and at least as fast as float32 (on CPUs
    without VNNI torch's ``_int_mm`` is tens of times slower), and the speed probe restores the thread count."""
    import fames.emulation.functional as fn

    if not fn.int_mm_exact(torch.device("cpu")):
        pytest.skip("no exact int8 matmul on this CPU build")
    for ratio, expected in ((0.03, False), (4.0, True)):
        monkeypatch.setattr(fn, "_int_mm_speed_ratio", lambda device, r=ratio: r)
        monkeypatch.setattr(fn, "_INT8_OK", {})
        assert fn.int8_available(torch.device("cpu")) == expected
    monkeypatch.undo()
    threads = torch.get_num_threads()
    assert fn._int_mm_speed_ratio(torch.device("cpu"), 16, 64, 32) > 0
    assert torch.get_num_threads() == threads
