"""Shared test settings: deterministic, single-threaded torch for speed on small shapes; fames' on-disk
caches in a per-session temp dir, so tests never read or write ~/.cache/fames."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _private_caches(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FAMES_CACHE", str(tmp_path_factory.getbasetemp() / "fames-cache"))
