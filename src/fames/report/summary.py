"""``summary.json`` and ``assignment.json``: the machine-readable records of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(summary: dict[str, Any], out_dir: Path) -> Path:
    """Write ``summary.json`` (indented, keys in record order). Returns its path."""
    path = Path(out_dir) / "summary.json"
    path.write_text(json.dumps(_clean(summary), indent=2, default=str) + "\n")
    return path


def write_assignment(assignment: dict[str, str], out_dir: Path) -> Path:
    """Write ``assignment.json`` (``{layer: multiplier}``, read by `load_assignment`). Returns the path."""
    from fames.emulation.api import save_assignment

    return save_assignment(assignment, Path(out_dir) / "assignment.json")


def write_offsets(offsets: dict[str, list[int]], out_dir: Path) -> Path | None:
    """Write ``assignment.offsets.json`` (``{layer: accumulator offset per output channel}``, read back
    together with ``assignment.json`` by ``--assignment``) when there are any."""
    from fames.emulation.api import offsets_path, save_offsets

    if not offsets:
        return None
    return save_offsets(offsets, offsets_path(Path(out_dir) / "assignment.json"))
