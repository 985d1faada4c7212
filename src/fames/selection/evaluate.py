"""Model evaluation on tensors: per-sample correctness and loss (what the budget search and GA need)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fames.selection.replay import LayerReplay
from fames.sensitivity.compensation import OffsetTable

Evaluator = Callable[[nn.Module], np.ndarray]
ApplyFn = Callable[[nn.Module, Mapping[str, str], object], object]

# Samples per forward pass of the evaluations (budget search, anchors, test report, benchmarks). Cache-sized
# batches are fastest on CPUs: ResNet's 10,000 test images took 5.3 s exact / 6.2 s approximate in batches of
# 256 (5.0 / 6.2 at 128) against 11.2 / 11.8 s in batches of 1,000 (2 threads, 2026-12-07).
EVALUATION_BATCH = 256


@dataclass
class EvalResult:
    """Per-sample results of one evaluation.

    Attributes:
        correct: bool array, top-1 prediction equals the label.
        loss: float array, per-sample cross-entropy.
    """

    correct: np.ndarray
    loss: np.ndarray

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * float(self.correct.mean()) if self.correct.size else 0.0


def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVALUATION_BATCH,
                   replay: LayerReplay | None = None, first: int = 0) -> EvalResult:
    """Batched eval-mode forward pass (mode restored afterwards).

    Args:
        model: any classifier returning logits.
        x: inputs.
        y: integer labels.
        batch_size: samples per forward pass.
        replay: reuse and store quantized-layer outputs of earlier evaluations of these images
            (`fames.selection.replay`); batches are identified by their sample range.
        first: index of ``x[0]`` in the data `replay` is kept for.

    Returns:
        An `EvalResult`.

    Raises:
        ValueError: when `x` and `y` differ in length or `batch_size` < 1.
    """
    if len(x) != len(y):
        raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    correct, losses = [], []
    try:
        with torch.no_grad(), (replay.active(model) if replay is not None else nullcontext()) as batch:
            for i in range(0, len(x), batch_size):
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                with batch((first + i, first + i + len(xb))) if batch is not None else nullcontext():
                    logits = model(xb)
                correct.append((logits.argmax(dim=1) == yb).cpu().numpy())
                losses.append(F.cross_entropy(logits, yb, reduction="none").cpu().double().numpy())
    finally:
        model.train(was_training)
    if not correct:
        return EvalResult(np.zeros(0, dtype=bool), np.zeros(0))
    return EvalResult(np.concatenate(correct), np.concatenate(losses))


class DatasetEvaluator:
    """``model -> per-sample correctness`` over fixed data; ``part=slice(a, b)`` evaluates samples a..b-1.

    The budget search screens candidates on a prefix and finishes them on the rest (`accepts_part`), and
    attributes a rejection to one substitution by the per-sample losses of `results`. Quantized-layer
    outputs are replayed across evaluations where the assignments agree on the first layers
    (`fames.selection.replay`; ``replay_bytes=0`` turns it off).
    """

    accepts_part = True

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVALUATION_BATCH,
                 replay_bytes: int | None = None) -> None:
        if len(x) != len(y):
            raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.replay = LayerReplay(replay_bytes) if replay_bytes != 0 else None

    def __len__(self) -> int:
        return len(self.x)

    def __call__(self, model: nn.Module, part: slice | None = None) -> np.ndarray:
        return self.results(model, part).correct

    def results(self, model: nn.Module, part: slice | None = None) -> EvalResult:
        """Per-sample correctness and cross-entropy of `model` on samples `part` (all by default)."""
        part = part or slice(None)
        start, _, step = part.indices(len(self.x))
        return evaluate_model(model, self.x[part], self.y[part], self.batch_size,
                              self.replay if step == 1 else None, start)


def make_evaluator(x: torch.Tensor, y: torch.Tensor, batch_size: int = EVALUATION_BATCH,
                   replay_bytes: int | None = None) -> DatasetEvaluator:
    """An evaluator ``model -> per-sample correctness`` over fixed data (the validation split), replaying
    quantized-layer outputs within `replay_bytes` (default `fames.selection.replay.default_replay_bytes`;
    0: off)."""
    return DatasetEvaluator(x, y, batch_size, replay_bytes)


def default_apply(pad_taps: bool = True, offsets: OffsetTable | None = None) -> ApplyFn:
    """`fames.emulation.api.approximate_` with the given padding convention (imported lazily), and the
    mean-error compensation offsets of `offsets` when given."""

    def apply(model: nn.Module, assignment: Mapping[str, str], library: object) -> object:
        from fames.emulation.api import approximate_

        extra = offsets.for_assignment(assignment) if offsets is not None else None
        return approximate_(model, assignment, library, pad_taps=pad_taps, offsets=extra)

    return apply
