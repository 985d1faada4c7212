"""Integer-exact float arithmetic on accelerators: the accumulators of quantized layers must be exact."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def exact_math(device: torch.device) -> Iterator[None]:
    """No TF32 on CUDA inside the block (it rounds operands to 10-bit mantissas, so sums of integer
    products stop being exact); a no-op on other devices."""
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled,
                                        benchmark=torch.backends.cudnn.benchmark,
                                        deterministic=torch.backends.cudnn.deterministic, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
