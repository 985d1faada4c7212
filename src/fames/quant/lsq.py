"""LSQ quantizers: learned step size, straight-through rounding, LSQ gradient scaling (Esser et al. 2020).

The quantizer returns *integer codes* (as a float tensor) and the step, so that layers can compute
``s_a * s_w * conv(x_int, w_int)`` exactly as DESIGN.md section 1 fixes; the gradient that reaches the
step is the LSQ one because ``code * step`` is LSQ's ``round(clamp(v / s)) * s``.
"""

from __future__ import annotations

import math
import weakref
from contextvars import ContextVar

import torch
from torch import nn

from fames.multipliers.formats import MAX_BITS, MIN_BITS, code_range

# The last few code tensors quantizers issued in this thread (a layer's forward issues its activation codes,
# then its weight codes): (weak reference, version counter, code range) each. Emulators skip their range
# check for these (`issued_within`), which saves about 4 % of an emulated pass.
_ISSUED: ContextVar[tuple[tuple[weakref.ref, int, int, int], ...]] = ContextVar("fames_issued_codes", default=())
_ISSUED_KEPT = 4


def issued_within(t: torch.Tensor, lo: int, hi: int) -> bool:
    """Whether `t` is, unchanged since, one of the last code tensors an `LsqQuantizer` returned in this
    thread, from a code range inside ``[lo, hi]``: then its codes are known to lie in ``[lo, hi]``.
    Exact: the weak reference names the very object and the version counter sees any in-place change."""
    return any(ref() is t and t._version == version and lo <= qmin and qmax <= hi
               for ref, version, qmin, qmax in _ISSUED.get())


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest with a straight-through (identity) gradient."""
    return x + (torch.round(x) - x).detach()


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; gradient multiplied by `scale`."""
    return x * scale + (x - x * scale).detach()


def check_bits(bits: object, what: str = "bits") -> int:
    """Validate a bit width given by a user; returns it as an int."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ValueError(f"{what} must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{what}={bits} is outside the supported range {MIN_BITS}..{MAX_BITS}")
    return bits


def mse_step(x: torch.Tensor, qmin: int, qmax: int, dim: int | None = None, grid: int = 80) -> torch.Tensor:
    """Step minimising the quantization MSE of `x` over a grid of clipping ranges (per `dim` if given)."""
    x = x.detach()
    if dim is None:
        flat = x.reshape(1, -1)
    else:
        flat = x.transpose(0, dim).reshape(x.shape[dim], -1)
    amax = flat.abs().amax(dim=1).clamp_min(1e-8)
    best_err = torch.full_like(amax, float("inf"))
    best = amax / max(qmax, 1)
    for i in range(1, grid + 1):
        step = amax * (i / grid) / max(qmax, -qmin, 1)
        q = torch.clamp(torch.round(flat / step[:, None]), qmin, qmax) * step[:, None]
        err = (q - flat).pow(2).mean(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, step, best)
    return best if dim is not None else best[0]


class LsqQuantizer(nn.Module):
    """Quantizer with a learned step, per tensor or per channel (axis 0).

    Args:
        bits: bit width 2..8.
        signed: two's complement codes if True, unsigned otherwise; None = decide from the first
            data seen (signed if it holds negative values).
        channels: number of per-channel steps (weights, per output channel) or None for one step.

    Example:
        >>> q = LsqQuantizer(4, signed=True)
        >>> codes, step = q(torch.randn(10))
        >>> bool((codes == codes.round()).all())
        True
    """

    def __init__(self, bits: int, signed: bool | None = True, channels: int | None = None) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.channels = channels
        self.step = nn.Parameter(torch.ones(channels if channels else ()))
        # signed is a buffer so that it travels with state_dict; -1 = undecided.
        self.register_buffer("signed_flag", torch.tensor(-1 if signed is None else int(signed)))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def signed(self) -> bool:
        flag = int(self.signed_flag)
        if flag < 0:
            raise RuntimeError("quantizer signedness undecided: run a forward pass first")
        return bool(flag)

    @property
    def code_range(self) -> tuple[int, int]:
        return code_range(self.bits, self.signed)

    def extra_repr(self) -> str:
        sign = {-1: "auto", 0: "unsigned", 1: "signed"}[int(self.signed_flag)]
        return f"bits={self.bits}, {sign}, channels={self.channels}"

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Choose signedness (if undecided) and an MSE-optimal initial step from data `x`."""
        if int(self.signed_flag) < 0:
            self.signed_flag.fill_(int(bool((x < 0).any())))
        qmin, qmax = self.code_range
        step = mse_step(x, qmin, qmax, dim=0 if self.channels else None)
        self.step.copy_(step.reshape(self.step.shape))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(codes, step)``: integer codes as floats and the (broadcastable) step."""
        if not bool(self.initialized):
            self.initialize(x)
        qmin, qmax = self.code_range
        numel = x[0].numel() if self.channels else x.numel()
        scale = 1.0 / math.sqrt(max(numel, 1) * max(qmax, 1))
        step = self.step.abs().clamp_min(1e-12)
        if self.training:
            step = grad_scale(step, scale)
        view = step.reshape(-1, *([1] * (x.dim() - 1))) if self.channels else step
        codes = x / view
        if torch.is_grad_enabled() and codes.requires_grad:
            codes = round_ste(torch.clamp(codes, qmin, qmax))
        else:
            codes = codes.clamp_(qmin, qmax).round_()  # no graph: the same codes in one buffer, in place
        _ISSUED.set(((weakref.ref(codes), codes._version, qmin, qmax), *_ISSUED.get()[:_ISSUED_KEPT - 1]))
        return codes, step
