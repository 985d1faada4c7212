"""LSQ gradients match the formulas of the LSQ paper (Esser et al. 2020), written out independently."""

import math

import pytest
import torch

from fames.quant.lsq import LsqQuantizer


def lsq_reference_grads(v: torch.Tensor, s: float, qn: int, qp: int, upstream: torch.Tensor):
    """dL/dv and dL/ds of v_hat = round(clip(v/s, qn, qp)) * s, with the gradient scale g = 1/sqrt(N qp)."""
    r = v / s
    inside = (r > qn) & (r < qp)
    dv = upstream * inside.double()
    ds_elem = torch.where(r <= qn, torch.full_like(r, qn),
                          torch.where(r >= qp, torch.full_like(r, qp), -r + torch.round(r)))
    g = 1.0 / math.sqrt(v.numel() * qp)
    return dv, float((upstream * ds_elem).sum()) * g


@pytest.mark.parametrize("bits,signed", [(2, True), (3, False), (4, True), (8, False)])
def test_lsq_gradients(bits, signed):
    q = LsqQuantizer(bits, signed=signed).double()
    x = (torch.randn(200, dtype=torch.float64) * 2).requires_grad_(True)
    q.initialize(x.detach())
    with torch.no_grad():
        q.step.fill_(0.37)
    q.train()
    codes, step = q(x)
    upstream = torch.randn(200, dtype=torch.float64)
    (codes * step * upstream).sum().backward()
    qn, qp = q.code_range
    dv, ds = lsq_reference_grads(x.detach(), 0.37, qn, qp, upstream)
    torch.testing.assert_close(x.grad, dv)
    assert q.step.grad.item() == pytest.approx(ds, rel=1e-9, abs=1e-12)


def test_per_channel_steps_and_codes_range():
    q = LsqQuantizer(3, signed=True, channels=4)
    w = torch.randn(4, 10)
    codes, step = q(w)
    assert step.shape == (4,)
    assert codes.min() >= -4 and codes.max() <= 3 and torch.equal(codes, codes.round())


def test_auto_signedness():
    q = LsqQuantizer(4, signed=None)
    q(torch.rand(10))
    assert q.signed is False
    q2 = LsqQuantizer(4, signed=None)
    q2(torch.randn(10))
    assert q2.signed is True
