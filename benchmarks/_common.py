"""Shared helpers of the issue-5 benchmarks (`fidelity.py`, `paper_table.py`): inputs, records, tables."""

from __future__ import annotations

import inspect
import json
import logging
import math
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fames.allocator import keep_large_blocks_in_heap
from fames.checkpoint import load_checkpoint
from fames.data import load_dataset
from fames.data.splits import Dataset, Split
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat
from fames.multipliers.library import Library, builtin_library, builtin_library_path, load_library
from fames.selection.api import DEFAULT_CALIBRATION, select

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_CHECKPOINT_DIR = ROOT / "src" / "fames" / "assets" / "models"
REFERENCE_MODELS = ("lenet", "vgg", "resnet")
CALIBRATION_SIZE = DEFAULT_CALIBRATION  # fames select's
SELECT_GROUPS: int = inspect.signature(select).parameters["groups"].default

log = logging.getLogger("benchmarks")
keep_large_blocks_in_heap()  # every benchmark, FAMES and GA alike (see fames.allocator)


@dataclass
class Reference:
    """A reference model with its data: calibration subset of train, validation and test splits."""

    name: str
    path: Path
    model: nn.Module
    header: dict[str, Any]
    data: Dataset
    calibration: Split


def parse_models(text: str) -> list[str]:
    """``"lenet,vgg"`` -> ``["lenet", "vgg"]`` (order kept, duplicates dropped)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    return list(dict.fromkeys(names))


def checkpoint_paths(models: Sequence[str], directory: Path) -> dict[str, Path]:
    """``{model: directory/<model>_mp.safetensors}`` for the checkpoints that exist (missing ones logged)."""
    found = {}
    for name in models:
        path = directory / f"{name}_mp.safetensors"
        if path.is_file():
            found[name] = path
        else:
            log.warning("skipping %s: %s not found", name, path)
    return found


def load_reference(name: str, path: Path, calibration_size: int = CALIBRATION_SIZE, seed: int = 0,
                   device: str = "cpu") -> Reference:
    """Load a checkpoint, its dataset (from the header) and a seeded calibration subset of train, all on
    `device` (the calibration subset is drawn on the CPU first, so it does not depend on the device)."""
    model, header = load_checkpoint(path)
    data = load_dataset(header.get("dataset", "fashion-mnist"))
    calibration = data.train.subset(calibration_size, seed=seed)
    if device != "cpu":
        dev = torch.device(device)
        model = model.to(dev)
        data = replace(data, train=data.train.to(dev), val=data.val.to(dev), test=data.test.to(dev))
        calibration = calibration.to(dev)
    return Reference(name, path, model, header, data, calibration)


def open_library(path: str | None) -> tuple[Library, str]:
    """The library at `path`, else the built-in one; also a label saying which was used."""
    if path:
        return load_library(path), str(Path(path).resolve())
    try:
        return builtin_library(), f"builtin:{builtin_library_path().name}"
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc}; or pass --library FILE") from None


def run_reference_models(models: Sequence[str], args: Any, run_model: Callable[..., dict[str, Any]]
                         ) -> tuple[list[dict[str, Any]], str]:
    """Set ``args.threads``, open ``args.library`` and run ``run_model(name, path, library, args)`` on each
    reference checkpoint of `models` found in ``args.checkpoint_dir``; also the library's label. Exits with
    a message when no checkpoint is found."""
    torch.set_num_threads(args.threads)
    library, label = open_library(args.library)
    found = checkpoint_paths(models, args.checkpoint_dir)
    if not found:
        raise SystemExit(f"no reference checkpoint for {', '.join(models)} in {args.checkpoint_dir}")
    return [run_model(name, path, library, args) for name, path in found.items()], label


def parse_floats(text: str, what: str, minimum: float = 0.0, inclusive: bool = False) -> list[float]:
    """``"0.1,0.2"`` -> ``[0.1, 0.2]`` for option ``--what``: every value above `minimum` (at least it with
    `inclusive`), else exit with a message."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{what}: expected comma-separated numbers, got {text!r}") from None
    low = min(values, default=minimum - 1.0)
    if not values or low < minimum or (low == minimum and not inclusive):
        raise SystemExit(f"--{what}: expected numbers {'>=' if inclusive else '>'} {minimum:g}, got {text!r}")
    return values


def candidates(library: Iterable[AppMul], fmt: OperandFormat) -> list[AppMul]:
    """Characterised approximate (non-exact) multipliers of `fmt`, by ascending energy."""
    muls = [m for m in library if m.fmt == fmt and m.hardware is not None and not m.is_exact]
    return sorted(muls, key=lambda m: (m.energy_pj, m.name))


def spread(muls: Sequence[AppMul], k: int | None) -> list[AppMul]:
    """At most `k` entries of `muls` (sorted by energy) spread evenly across the list; all if k is None."""
    if k is None or len(muls) <= k:
        return list(muls)
    idx = np.unique(np.round(np.linspace(0, len(muls) - 1, k)).astype(int))
    return [muls[i] for i in idx]


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int | None]:
    """Spearman and Pearson of two sequences (None when undefined: fewer than 3 points or constant)."""
    from scipy import stats

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out: dict[str, float | int | None] = {"spearman": None, "pearson": None, "n": int(a.size)}
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return out
    out["spearman"] = finite(stats.spearmanr(a, b).statistic)
    out["pearson"] = finite(stats.pearsonr(a, b).statistic)
    return out


def median_ratio(estimate: Sequence[float], measured: Sequence[float], floor: float = 1e-6) -> float | None:
    """Median of estimate / measured over pairs whose measured change is > `floor` (a real loss increase)."""
    e, m = np.asarray(estimate, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    keep = m > floor
    return finite(np.median(e[keep] / m[keep])) if keep.any() else None


def finite(value: float) -> float | None:
    """`value` as float, None when NaN/inf (JSON has no NaN)."""
    v = float(value)
    return v if math.isfinite(v) else None


def environment(threads: int, device: str = "cpu") -> dict[str, Any]:
    """Where the numbers were measured."""
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
           "threads": threads, "machine": platform.machine(), "device": device}
    if torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def fmt_num(value: Any, digits: int = 3) -> str:
    """Markdown cell for a number (``-`` for None)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt_num(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(name: str, record: dict[str, Any], markdown: str, results: Path = RESULTS) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` and print the Markdown."""
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    (results / f"{name}.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\nwrote {results / (name + '.json')} and {results / (name + '.md')}")
