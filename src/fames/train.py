"""Seeded, resumable training loops: float training and quantization-aware training (QAT)."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fames.checkpoint import atomic_write
from fames.data.splits import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (flat, one reason each)."""

    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # small batches generalise well on 28x28 images
    lr: float = 0.05  # peak learning rate of the one-cycle schedule (SGD+Nesterov)
    weight_decay: float = 5e-4  # standard for small CNNs
    momentum: float = 0.9
    augment: bool = True  # random 2-pixel shifts and horizontal flips (Fashion-MNIST is flip-invariant)
    seed: int = 0  # seeds torch, numpy, python and the data order
    step_lr_scale: float = 0.1  # LSQ step sizes train with a smaller learning rate and no weight decay


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random shift by up to 2 pixels (zero fill)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000) -> tuple[float, float]:
    """Top-1 accuracy (percent) and mean cross-entropy of `model` on `split`."""
    model.eval()
    correct, loss = 0, 0.0
    for x, y in split.batches(batch_size):
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return 100.0 * correct / len(split), loss / len(split)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    steps = [p for n, p in model.named_parameters() if n.endswith(".step")]
    step_ids = {id(p) for p in steps}
    decay = [p for p in model.parameters() if id(p) not in step_ids and p.dim() > 1]
    no_decay = [p for p in model.parameters() if id(p) not in step_ids and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
    ]
    if steps:
        groups.append({"params": steps, "weight_decay": 0.0, "lr": cfg.lr * cfg.step_lr_scale})
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def train(
    model: nn.Module,
    train_split: Split,
    val_split: Split,
    cfg: TrainConfig,
    state_path: str | os.PathLike | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> list[dict]:
    """Train `model` in place with SGD and a one-cycle schedule; returns the per-epoch history.

    Args:
        model: float or quantized model (QAT when it holds quantized layers).
        train_split, val_split: data; validation accuracy is logged after every epoch.
        cfg: hyper-parameters.
        state_path: file for the resumable training state (model, optimizer, schedule, RNG, history),
            written atomically after every epoch; if it exists, training resumes from it.
        progress: callback ``(step, total_steps, info)`` called after every batch (for progress bars).
    """
    seed_everything(cfg.seed)
    optimizer = _optimizer(model, cfg)
    steps_per_epoch = (len(train_split) + cfg.batch_size - 1) // cfg.batch_size
    max_lrs = [g["lr"] for g in optimizer.param_groups]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lrs, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    start_epoch = 0
    if state_path is not None and Path(state_path).is_file():
        state = torch.load(state_path, weights_only=False)
        if state.get("config") != asdict(cfg):
            raise ValueError(f"{state_path} was written with other settings; delete it or use the same ones")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, start_epoch = state["history"], state["epoch"]
        log.info("resuming from %s at epoch %d", state_path, start_epoch)
    total = cfg.epochs * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(len(train_split), generator=gen)
        running, seen = 0.0, 0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x, y = train_split.x[idx], train_split.y[idx]
            if cfg.augment:
                x = augment_batch(x, gen)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(y)
            seen += len(y)
            if progress is not None:
                progress(epoch * steps_per_epoch + i + 1, total, {"epoch": epoch + 1, "loss": running / seen})
        val_acc, val_loss = evaluate(model, val_split)
        history.append({"epoch": epoch + 1, "train_loss": running / seen, "val_accuracy": val_acc,
                        "val_loss": val_loss})
        log.info("epoch %d: train loss %.4f, val acc %.2f %%", epoch + 1, running / seen, val_acc)
        if state_path is not None:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "generator": gen.get_state(),
                     "torch_rng": torch.get_rng_state(), "history": history, "epoch": epoch + 1,
                     "config": asdict(cfg)}
            atomic_write(Path(state_path), lambda tmp, s=state: torch.save(s, tmp))
    return history
