"""A user's dataset as a ``.npz`` of arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Images are ``N x H x W`` (one channel added) or ``N x C x H x W``. Scaling: ``uint8`` images are divided
by 255; float images are used as they are (expected in [0, 1] like the built-in sets). Labels are
integers ``0 .. K-1``. The validation split is carved from the training arrays with a seeded
permutation (`carve_validation`): 10 % of them, at most 5,000 images.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from fames.data.splits import Dataset, Split, carve_validation
from fames.errors import UsageError

KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_VALIDATION = 5000


def _images(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise UsageError(f"{path}: {key} has shape {arr.shape}; expected N x H x W or N x C x H x W")
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    if np.issubdtype(arr.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    raise UsageError(f"{path}: {key} has dtype {arr.dtype}; expected uint8 (scaled by 1/255) or float")


def _labels(arr: np.ndarray, key: str, n: int, path: Path) -> torch.Tensor:
    if arr.ndim != 1 or len(arr) != n:
        raise UsageError(f"{path}: {key} has shape {arr.shape}; expected ({n},) to match the images")
    if not np.issubdtype(arr.dtype, np.integer) or (len(arr) and arr.min() < 0):
        raise UsageError(f"{path}: {key} must hold non-negative integer class labels")
    return torch.from_numpy(arr.astype(np.int64))


def load_npz_dataset(path: str | os.PathLike, n_val: int | None = None, seed: int = 0) -> Dataset:
    """Read a user dataset (see the module docstring).

    Args:
        path: the ``.npz`` file.
        n_val: validation images carved from training; default 10 % (at most 5,000, at least 1).
        seed: seed of the carving permutation.

    Returns:
        A `Dataset` named after the file.

    Raises:
        UsageError: missing/unreadable file, missing keys, bad shapes, dtypes or labels.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise UsageError(f"{path}: missing arrays {', '.join(missing)} (need {', '.join(KEYS)})")
            arrays = {k: npz[k] for k in KEYS}
    except UsageError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"cannot read data file {path} ({' '.join(str(exc).split())})") from None
    x_train = _images(arrays["x_train"], "x_train", path)
    x_test = _images(arrays["x_test"], "x_test", path)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UsageError(f"{path}: x_train images {tuple(x_train.shape[1:])} differ from x_test "
                         f"{tuple(x_test.shape[1:])}")
    y_train = _labels(arrays["y_train"], "y_train", len(x_train), path)
    y_test = _labels(arrays["y_test"], "y_test", len(x_test), path)
    if len(y_train) < 2 or len(y_test) < 1:
        raise UsageError(f"{path}: need at least 2 training and 1 test image")
    n_val = n_val if n_val is not None else max(1, min(MAX_VALIDATION, len(y_train) // 10))
    try:
        train, val = carve_validation(x_train, y_train, n_val, seed=seed)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(path.stem, train, val, Split(x_test, y_test), classes)
