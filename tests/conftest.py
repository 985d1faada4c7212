"""Shared test settings: deterministic, single-threaded torch for speed on small shapes."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
