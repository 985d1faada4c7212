"""On-disk cache of the exact factorisations of multiplier tables (`fames.emulation.plan.build_forms`).

The low-rank forms come from exact rational elimination: 0.1-0.5 s for an 8-bit table, about 4 s for the
two dozen tables a VGG selection touches. Like the characterisation cache, the result is kept under
``$FAMES_CACHE/forms`` (default ``~/.cache/fames/forms``), one file per table, so that it is paid once per
table and machine rather than once per process. Every loaded form is checked exactly against its table
(`check_form`), so a stale or damaged file is rebuilt, never trusted; a cache that cannot be written is
skipped. ``FAMES_FORM_CACHE=0`` turns it off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fames.circuits.tools import cache_root
from fames.emulation.factor import Form, check_form, make_form
from fames.multipliers.formats import OperandFormat

FORMS_VERSION = 1  # bump when build_forms changes what it returns
log = logging.getLogger(__name__)


def form_cache_path(key: str, max_rank: int) -> Path:
    """Where the forms of the table with hash `key` (`fames.emulation.plan.table_key`) are kept."""
    return cache_root() / "forms" / f"{key}_r{max_rank}_v{FORMS_VERSION}.npz"


def cached_forms(table: np.ndarray, fmt: OperandFormat, key: str, max_rank: int,
                 build: Callable[[np.ndarray, OperandFormat, int], tuple[Form, ...]]) -> tuple[Form, ...]:
    """The forms of `table`: read from the cache when every stored form checks exactly, else `build` them
    and store them."""
    if os.environ.get("FAMES_FORM_CACHE", "1") == "0":
        return build(table, fmt, max_rank)
    path = form_cache_path(key, max_rank)
    forms = _load(path, np.asarray(table, dtype=np.int64))
    if forms is None:
        forms = build(table, fmt, max_rank)
        _save(path, forms)
    return forms


def _load(path: Path, table: np.ndarray) -> tuple[Form, ...] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            forms = tuple(
                make_form(str(data[f"kind{i}"]), str(data[f"base{i}"]), data[f"p{i}"], data[f"q{i}"],
                          int(data[f"denom{i}"]), data[f"w_col{i}"] if f"w_col{i}" in data else None)
                for i in range(int(data["count"])))
    except (OSError, KeyError, ValueError):
        return None
    if not all(check_form(form, table) for form in forms):
        log.warning("emulation form cache %s does not match its table: rebuilding it", path)
        return None
    return forms


def _save(path: Path, forms: tuple[Form, ...]) -> None:
    arrays: dict[str, np.ndarray] = {"count": np.array(len(forms))}
    for i, form in enumerate(forms):
        arrays.update({f"kind{i}": np.array(form.kind), f"base{i}": np.array(form.base), f"p{i}": form.p,
                       f"q{i}": form.q, f"denom{i}": np.array(form.denom)})
        if form.w_col is not None:
            arrays[f"w_col{i}"] = form.w_col
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError as exc:
        log.debug("emulation form cache not written (%s)", exc)
