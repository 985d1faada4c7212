"""`keep_large_blocks_in_heap`: takes effect on glibc, and the opt-out is honoured."""

from __future__ import annotations

import platform

import pytest

from fames.allocator import keep_large_blocks_in_heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_takes_effect_on_glibc(monkeypatch) -> None:
    monkeypatch.delenv("FAMES_MALLOC_TUNING", raising=False)
    assert keep_large_blocks_in_heap() is True


def test_opt_out(monkeypatch) -> None:
    monkeypatch.setenv("FAMES_MALLOC_TUNING", "0")
    assert keep_large_blocks_in_heap() is False
