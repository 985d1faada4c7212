"""Brute-force unfold + gather references (float64 / int64), for the emulation tests only."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat


def ref_conv2d(x, w, table, fmt, stride=1, padding=0, dilation=1, groups=1, pad_taps=True):
    """``sum_k T[x_k, w_k]`` by enumerating every product (int64 lookups, exact)."""
    t = torch.tensor(np.array(table), dtype=torch.int64)
    a_lo, w_lo = fmt.a_range[0], fmt.w_range[0]
    n, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    xp = F.pad(x.double(), (pw, pw, ph, ph), value=0.0)
    valid = F.pad(torch.ones(1, 1, h, wd, dtype=torch.float64), (pw, pw, ph, ph), value=0.0)
    cols = F.unfold(xp, (kh, kw), dilation=dilation, stride=stride)  # (n, cin*kh*kw, L)
    vcols = F.unfold(valid, (kh, kw), dilation=dilation, stride=stride)  # (1, kh*kw, L)
    length = cols.shape[-1]
    cols = cols.view(n, groups, cin_g * kh * kw, length).long()
    vmask = vcols.view(1, 1, kh * kw, length).repeat(1, cin_g, 1, 1).view(1, cin_g * kh * kw, length)
    wk = w.reshape(groups, cout // groups, cin_g * kh * kw).long()
    out = torch.zeros(n, cout, length, dtype=torch.int64)
    for g in range(groups):
        xi = cols[:, g][:, None] - a_lo  # (n, 1, K, L)
        wi = wk[g][None, :, :, None] - w_lo  # (1, cout_g, K, 1)
        prod = t[xi, wi]  # (n, cout_g, K, L)
        if not pad_taps:
            prod = prod * vmask[:, None].long()
        out[:, g * (cout // groups):(g + 1) * (cout // groups)] = prod.sum(dim=2)
    oh = (h + 2 * ph - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pw - dilation * (kw - 1) - 1) // stride + 1
    return out.view(n, cout, oh, ow)


def ref_linear(x, w, table, fmt):
    t = torch.tensor(np.array(table), dtype=torch.int64)
    xi = x.long()[..., None, :] - fmt.a_range[0]
    wi = w.long() - fmt.w_range[0]
    return t[xi, wi].sum(-1)


def random_codes(shape, lo, hi, gen):
    return torch.randint(lo, hi + 1, shape, generator=gen).double().float()


def random_appmul(fmt: OperandFormat, rng: np.random.Generator, kind: str = "random", name=None) -> AppMul:
    """``random``: full-rank noise on every entry; ``trunc``: low-bit partial products dropped;
    ``zero``: returns 1 for 0 x anything (T[0, v] != 0)."""
    exact = fmt.exact_table()
    if kind == "random":
        scale = max(1, int(np.abs(exact).max()) // 8)
        table = exact + rng.integers(-scale, scale + 1, size=exact.shape)
    elif kind == "trunc":
        table = truncated_table(fmt, k=max(1, (fmt.a_bits + fmt.w_bits) // 3))
    elif kind == "zero":
        table = exact.copy()
        table[-fmt.a_range[0]] += 1 + rng.integers(0, 3, size=exact.shape[1])
    else:
        raise ValueError(kind)
    return AppMul(name or f"{fmt.name}_{kind}", fmt, table)


def truncated_table(fmt: OperandFormat, k: int) -> np.ndarray:
    """Truncation multiplier: drop partial products ``a_i w_j 2^(i+j)`` with ``i + j < k``
    (two's-complement bit patterns; sign bits carry negative weight)."""
    def bits(codes, nbits, signed):
        b = (codes[:, None] >> np.arange(nbits)) & 1
        weight = 2 ** np.arange(nbits)
        if signed:
            weight = weight.copy()
            weight[-1] = -weight[-1]
        return b * weight
    ab = bits(fmt.a_codes(), fmt.a_bits, fmt.a_signed)  # (|A|, a_bits)
    wb = bits(fmt.w_codes(), fmt.w_bits, fmt.w_signed)
    i = np.arange(fmt.a_bits)[:, None]
    j = np.arange(fmt.w_bits)[None, :]
    keep = (i + j) >= k
    return np.einsum("ai,wj,ij->aw", ab, wb, keep.astype(np.int64))


def counted_aminmax(monkeypatch) -> list[int]:
    """Count the emulators' range-check reads (calls of `torch.aminmax`) from here on: ``calls[0]``."""
    calls = [0]
    real = torch.aminmax

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "aminmax", counted)
    return calls
