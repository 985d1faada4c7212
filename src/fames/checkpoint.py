"""Checkpoints: one `.safetensors` file holding weights, quantizer state and a JSON header.

The header (safetensors metadata key ``fames``) records the model name and arguments, the bits of every
quantized layer, the dataset, accuracies and the command that produced it, so that `load_checkpoint`
rebuilds the exact module (quantized layers included) and reloads it to bit-identical outputs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fames import __version__
from fames.models import build_model
from fames.quant.api import bits_of, quantize_

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated or does not match its model."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then atomically rename the result to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Save `model` with `meta` (must hold ``model`` and ``model_kwargs``); bits are added from the model."""
    header = dict(meta)
    header.update(format_version=FORMAT_VERSION, fames_version=__version__, bits=bits_of(model))
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(Path(path), lambda tmp: save_file(state, tmp, metadata={"fames": json.dumps(header)}))


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a checkpoint, without loading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        header = json.loads(meta["fames"])
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid fames checkpoint ({type(exc).__name__}: {exc})") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {header.get('format_version')!r}")
    return header


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (quantized as it was saved) and load its weights.

    Args:
        path: the `.safetensors` checkpoint.
        model: an un-quantized instance to load into (for user models); built from the header if None.

    Raises:
        CheckpointError: the file is missing, corrupt, truncated or its tensors do not fit the model.
    """
    header = read_header(path)
    if model is None:
        model = build_model(header["model"], **header.get("model_kwargs", {}))
    bits = {name: {k: v for k, v in b.items() if v is not None} for name, b in header.get("bits", {}).items()}
    try:
        quantize_(model, bits)
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot load weights ({first})") from None
    model.eval()
    return model, header
