"""A user's own PyTorch model: ``path/to/file.py:ClassName`` (or ``:factory``) plus a state_dict file.

Every mistake the user can make (missing file, syntax error, missing class, weights that do not fit)
becomes a one-line `UsageError` naming the file.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fames.errors import UsageError


def parse_model_spec(spec: str) -> tuple[Path, str]:
    """Split ``path/to/file.py:Name`` into the file and the attribute name.

    Raises:
        UsageError: no ``:Name`` part.
    """
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise UsageError(f"--model {spec!r}: expected path/to/file.py:ClassName (or :factory_function)")
    return Path(path), name


def import_model_file(path: Path) -> Any:
    """Import a Python file as an anonymous module.

    Raises:
        UsageError: the file is missing, has a syntax error or fails while importing.
    """
    if not path.is_file():
        raise UsageError(f"model file {path} not found")
    mod_name = f"fames_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"model file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        raise UsageError(f"model file {path} line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - any import-time failure of user code is a usage error
        sys.modules.pop(mod_name, None)
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        raise UsageError(f"model file {path} failed to import ({reason})") from None
    return module


def build_user_model(spec: str) -> nn.Module:
    """Instantiate the model named by ``file.py:ClassName`` (called without arguments).

    Raises:
        UsageError: bad spec, bad file, missing name, or the call does not give an `nn.Module`.
    """
    path, name = parse_model_spec(spec)
    module = import_model_file(path)
    if not hasattr(module, name):
        found = [k for k, v in vars(module).items()
                 if not k.startswith("_") and getattr(v, "__module__", None) == module.__name__
                 and (inspect.isclass(v) or inspect.isfunction(v))]
        hint = f"; it defines {', '.join(found)}" if found else ""
        raise UsageError(f"model file {path} has no class or function {name!r}{hint}")
    factory = getattr(module, name)
    if not callable(factory):
        raise UsageError(f"{path}:{name} is not a class or function")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - user code
        raise UsageError(f"{path}:{name}() failed ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"{path}:{name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A float state_dict from ``.safetensors`` or a ``torch.save`` file (read with ``weights_only``).

    A dict holding a ``state_dict`` or ``model`` entry (a training checkpoint) is unwrapped.

    Raises:
        UsageError: missing or unreadable file, or not a mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unreadable file
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        raise UsageError(f"cannot read weights file {path} ({reason})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"weights file {path} does not hold a state_dict (a mapping of names to tensors)")
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Load `state` strictly into `model`; a mismatch becomes one line naming the first differences.

    Raises:
        UsageError: missing or unexpected keys, or tensors of the wrong shape.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_few(shapes)}")
    if problems:
        raise UsageError(f"{source} do not match {type(model).__name__}: " + "; ".join(problems))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UsageError(f"{source} do not match {type(model).__name__} ({_first_line(exc)})") from None


def load_user_model(spec: str, weights: str | os.PathLike | None) -> nn.Module:
    """Build ``file.py:ClassName`` and load its float weights (in eval mode).

    Args:
        spec: ``path/to/file.py:ClassName`` or ``path/to/file.py:factory_function``.
        weights: state_dict file (``.pt``/``.pth`` or ``.safetensors``); None keeps the initial weights.

    Raises:
        UsageError: one line for any problem with the file, the name or the weights.

    Example:
        >>> # model = load_user_model("my_net.py:Net", "my_net.pt")
    """
    model = build_user_model(spec)
    if weights is not None:
        load_weights(model, read_state_dict(weights), f"weights {weights}")
    return model.eval()


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
