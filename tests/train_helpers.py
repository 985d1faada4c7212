"""Seeded Adam training loop shared by tests that need a small trained model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
