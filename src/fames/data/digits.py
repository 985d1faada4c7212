"""scikit-learn's bundled 8x8 digits (1,797 images): a tiny offline dataset for fast tests."""

from __future__ import annotations

import numpy as np
import torch

from fames.data.splits import Dataset, Split, carve_validation


def load_digits_dataset(n_val: int = 200, n_test: int = 360) -> Dataset:
    """Digits scaled to [0, 1] (pixel / 16), shape (N, 1, 8, 8); a fixed seeded test and validation split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    test_idx, rest_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    train, val = carve_validation(x[rest_idx], y[rest_idx], n_val)
    return Dataset("digits", train, val, Split(x[test_idx], y[test_idx]), num_classes=10)
