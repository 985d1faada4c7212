"""In-memory dataset splits: images as float tensors in [0, 1], labels as int64."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """One split: `x` of shape (N, C, H, W), float32 in [0, 1]; `y` of shape (N,), int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, n: int, seed: int = 0) -> Split:
        """A deterministic random subset of at most `n` samples."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> Split:
        """This split with its tensors on `device` (itself when they are there already)."""
        dev = torch.device(device)
        if self.x.device == dev and self.y.device == dev:
            return self
        return Split(self.x.to(dev), self.y.to(dev))

    def batches(self, batch_size: int):
        """Yield ``(x, y)`` batches in order."""
        for i in range(0, len(self), batch_size):
            yield self.x[i : i + batch_size], self.y[i : i + batch_size]


@dataclass(frozen=True)
class Dataset:
    """A dataset with train / validation / test splits. The test split never steers any choice."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}: expected 'train', 'val' or 'test'")
        return getattr(self, name)


def carve_validation(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int = 0) -> tuple[Split, Split]:
    """Split training arrays into (train, val) with a fixed seeded permutation."""
    if not 0 < n_val < len(y):
        raise ValueError(f"validation size {n_val} must be between 1 and {len(y) - 1}")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])
