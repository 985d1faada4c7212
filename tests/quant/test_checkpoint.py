"""Checkpoints reload to bit-identical outputs; damaged files give CheckpointError."""

import pytest
import torch

from fames.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fames.models import build_model
from fames.quant import quantize_


@pytest.mark.parametrize("name", ["lenet", "vgg", "resnet"])
def test_round_trip_bit_identical(tmp_path, name):
    model = build_model(name, image_size=8)
    x = torch.rand(6, 1, 8, 8)
    quantize_(model, {"*": {"w": 3, "a": 4}, "fc*": 8} if name != "vgg" else {"*": 2}, calibration=x)
    model.eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, {"model": name, "model_kwargs": {"image_size": 8}, "dataset": "digits"})
    loaded, header = load_checkpoint(path)
    assert torch.equal(model(x), loaded(x))
    assert header["bits"] == {k: v for k, v in header["bits"].items()}
    assert header["model"] == name


def test_damaged_files(tmp_path):
    model = build_model("lenet", image_size=8)
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, {"model": "lenet", "model_kwargs": {"image_size": 8}})
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    for bad in ("trunc", "junk", "missing"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / f"{bad}.safetensors")
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(path, model=build_model("vgg", image_size=8))
