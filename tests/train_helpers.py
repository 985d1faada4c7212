"""Helpers shared by tests that need a small trained model: a seeded Adam loop and a truncation library."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fames.multipliers import AppMul, HardwareFigures, OperandFormat
from fames.multipliers.library import Library


def quick_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 4, lr: float = 1e-2) -> None:
    """Train `model` in place with Adam, batch 64, a fixed data order; leaves it in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def truncation_library(formats: list[OperandFormat]) -> Library:
    """Exact multipliers of `formats` and truncations of the 1-3 low product bits (15 % cheaper per bit)."""
    lib = Library()
    for fmt in formats:
        e0 = 0.01 * fmt.a_bits * fmt.w_bits
        hw = lambda e: HardwareFigures(1.0, 1.0, e * 100, e, clock_ns=10.0)  # noqa: E731
        lib.add(AppMul.exact(fmt, hardware=hw(e0)))
        exact = fmt.exact_table()
        for k in (1, 2, 3):  # truncate the k low product bits
            lib.add(AppMul(f"{fmt.name}_trunc{k}", fmt, (exact >> k) << k, hardware=hw(e0 * (1 - 0.15 * k)),
                           family="truncation"))
    return lib
