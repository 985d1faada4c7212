"""The on-disk form cache: a round trip gives the same forms; a damaged file is rebuilt; off means off."""

from __future__ import annotations

import numpy as np

from fames.emulation import plan
from fames.emulation.factor import check_form
from fames.emulation.form_cache import form_cache_path
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat


def _mul() -> AppMul:
    fmt = OperandFormat.parse("u4xs4")
    table = fmt.exact_table()
    table[3:, :5] -= np.arange(5)  # a low-rank error
    return AppMul("cached", fmt, table)


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        (x.kind, x.base, x.denom) == (y.kind, y.base, y.denom) and np.array_equal(x.p, y.p)
        and np.array_equal(x.q, y.q) and (x.w_col is None) == (y.w_col is None) for x, y in zip(a, b, strict=True))


def test_round_trip_and_damaged_file(monkeypatch) -> None:
    mul = _mul()
    plan.clear_cache()
    built = plan.prepare(mul).forms
    path = form_cache_path(plan.table_key(mul.table, mul.fmt), plan.DEFAULT_MAX_RANK)
    assert path.is_file()
    calls = []
    monkeypatch.setattr(plan, "build_forms", lambda *a: calls.append(a) or ())  # would return nothing
    plan.clear_cache()
    assert _same(plan.prepare(mul).forms, built) and not calls  # read back, not rebuilt
    with np.load(path) as data:
        arrays = dict(data)
    arrays["p0"] = arrays["p0"] + 1  # damage one factor: the exact check fails on load
    np.savez(path, **arrays)
    monkeypatch.undo()
    plan.clear_cache()
    rebuilt = plan.prepare(mul).forms
    assert _same(rebuilt, built) and all(check_form(f, mul.table) for f in rebuilt)


def test_off(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FAMES_CACHE", str(tmp_path))
    monkeypatch.setenv("FAMES_FORM_CACHE", "0")
    mul = _mul()
    plan.clear_cache()
    plan.prepare(mul)
    assert not form_cache_path(plan.table_key(mul.table, mul.fmt), plan.DEFAULT_MAX_RANK).exists()
    plan.clear_cache()
