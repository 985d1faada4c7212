"""Fashion-MNIST from Debian's `dataset-fashion-mnist` package (gzip IDX files, 60k train / 10k test)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from fames.data.splits import Dataset, carve_validation

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
VALIDATION_SIZE = 5000


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says how to install them."""


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzip) IDX file into a numpy array; ValueError if it is not a valid IDX file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated IDX file (expected {int(np.prod(dims))} values, got {body.size})")
    return body.reshape(dims)


def load_fashion_mnist(root: str | os.PathLike | None = None, n_val: int = VALIDATION_SIZE) -> Dataset:
    """Load Fashion-MNIST with a deterministic validation split carved from the training set.

    Args:
        root: folder with the four gzip IDX files; default `$FAMES_FASHION_MNIST` or Debian's path.
        n_val: number of training images held out for validation (fixed seed).

    Raises:
        DatasetNotFoundError: the files are missing (install Debian's `dataset-fashion-mnist`).
    """
    root = Path(root or os.environ.get("FAMES_FASHION_MNIST", DEFAULT_ROOT))
    missing = [name for name in FILES.values() if not (root / name).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found in {root} (missing {missing[0]}): "
            "install it with `apt-get install dataset-fashion-mnist` (or run `make deps`)"
        )
    arrays = {key: read_idx(root / name) for key, name in FILES.items()}
    x_train = torch.from_numpy(arrays["train_x"].astype(np.float32) / 255.0).unsqueeze(1)
    y_train = torch.from_numpy(arrays["train_y"].astype(np.int64))
    train, val = carve_validation(x_train, y_train, n_val)
    x_test = torch.from_numpy(arrays["test_x"].astype(np.float32) / 255.0).unsqueeze(1)
    test_y = torch.from_numpy(arrays["test_y"].astype(np.int64))
    from fames.data.splits import Split

    return Dataset("fashion-mnist", train, val, Split(x_test, test_y), num_classes=10)
