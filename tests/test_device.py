"""`fames.device`: device names checked up front, models moved and returned."""

import pytest
import torch
from torch import nn

from fames.data.splits import Split
from fames.device import model_device, on_device, resolve_device
from fames.errors import UsageError


def test_cpu_resolves():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name,expect", [("gpu", "unknown device"), ("cuda:x", "unknown device"),
                                         ("meta", "supports cpu, cuda and mps")])
def test_bad_names(name, expect):
    with pytest.raises(UsageError, match=expect):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_missing_says_so():
    with pytest.raises(UsageError, match="CUDA is not available.*--device cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_index_out_of_range():
    with pytest.raises(UsageError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


class RecordingLinear(nn.Linear):
    """Records the devices `to` was called with (a CPU-only machine has no second device to move to)."""

    def __init__(self) -> None:
        super().__init__(2, 2)
        self.moves: list[str] = []

    def to(self, device):  # type: ignore[override]
        self.moves.append(str(device))
        return self


def test_on_device_returns_the_model_even_on_error():
    model = RecordingLinear()
    with pytest.raises(RuntimeError, match="boom"), on_device(model, torch.device("cuda")):
        assert model.moves == ["cuda"]
        raise RuntimeError("boom")
    assert model.moves == ["cuda", "cpu"]


def test_model_without_tensors_is_on_cpu():
    assert model_device(nn.ReLU()) == torch.device("cpu")


def test_split_to_same_device_is_itself():
    split = Split(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long))
    assert split.to("cpu") is split
    moved = split.to("meta")
    assert moved.x.device.type == moved.y.device.type == "meta" and moved.x.shape == split.x.shape
