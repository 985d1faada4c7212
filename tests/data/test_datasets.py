"""Dataset loaders: shapes, deterministic disjoint validation split, clear errors for missing files."""

import gzip
from pathlib import Path

import pytest
import torch

from fames.data import DatasetNotFoundError, load_digits_dataset, load_fashion_mnist
from fames.data.fashion_mnist import DEFAULT_ROOT, read_idx


def test_digits():
    d = load_digits_dataset()
    assert d.train.x.shape[1:] == (1, 8, 8) and 0 <= d.train.x.min() and d.train.x.max() <= 1
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    d2 = load_digits_dataset()
    assert torch.equal(d.val.x, d2.val.x)


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_splits():
    d = load_fashion_mnist()
    assert (len(d.train), len(d.val), len(d.test)) == (55000, 5000, 10000)
    assert d.train.x.shape[1:] == (1, 28, 28) and d.train.x.dtype == torch.float32
    # validation images are carved from the training set and never repeated in it
    train_keys = {hash(row.numpy().tobytes()) for row in d.train.x[:, 0, 10]}
    overlap = sum(hash(row.numpy().tobytes()) in train_keys for row in d.val.x[:200, 0, 10])
    assert overlap < 20  # identical middle rows are rare (blank rows excepted)
    assert torch.equal(load_fashion_mnist().val.y, d.val.y)


def test_missing_dataset_names_the_package(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_truncated_idx(tmp_path: Path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)
