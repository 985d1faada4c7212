"""The torch device a user asked for, checked before any work starts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from fames.errors import UsageError


def resolve_device(name: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``... as a `torch.device` this machine has.

    Raises:
        UsageError: an unknown device string, or a device this machine or torch build does not have.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"unknown device {name!r} ({exc}); use e.g. cpu, cuda or cuda:0") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__} " + ("has CUDA but finds no GPU" if torch.version.cuda
                                                     else "is a CPU-only build")
            raise UsageError(f"device {name!r}: CUDA is not available ({build}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"device {name!r}: Apple MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"device {name!r}: fames supports cpu, cuda and mps")
    return device


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter (else buffer) lives; the CPU for a model without tensors."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Move `model` to `device` for the block and back to where it was afterwards (also on errors)."""
    home = model_device(model)
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)
