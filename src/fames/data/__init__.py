"""Built-in datasets (Fashion-MNIST, sklearn digits) and user `.npz` arrays."""

from __future__ import annotations

from fames.data.digits import load_digits_dataset
from fames.data.fashion_mnist import DatasetNotFoundError, load_fashion_mnist
from fames.data.splits import Dataset, Split

DATASETS = {"fashion-mnist": load_fashion_mnist, "digits": load_digits_dataset}


def load_dataset(name: str) -> Dataset:
    """Load a built-in dataset by name ('fashion-mnist' or 'digits')."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: built-in datasets are {', '.join(DATASETS)}")
    return DATASETS[name]()


__all__ = ["DATASETS", "Dataset", "DatasetNotFoundError", "Split", "load_dataset",
           "load_digits_dataset", "load_fashion_mnist"]
