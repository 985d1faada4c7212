"""Reading user inputs given on the command line: bits configs, checkpoints, datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fames.errors import UsageError


def read_bits_config(text: str) -> dict[str, Any]:
    """A bits config from a JSON file path, an inline JSON object, or ``name=bits,pattern=bits``."""
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise UsageError(f"bits config file {text} not found")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"bits config {text} is not valid JSON ({exc})") from None
    elif text.strip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"bits config is not valid JSON ({exc})") from None
    else:
        data = {}
        for item in text.split(","):
            if "=" not in item:
                raise UsageError(f"bits config item {item!r}: expected NAME=BITS (e.g. 'conv1=8,fc*=4')")
            key, value = item.split("=", 1)
            data[key.strip()] = value.strip()
    if not isinstance(data, dict):
        raise UsageError("bits config must be a JSON object {layer or pattern: bits}")
    if "bits" in data and isinstance(data["bits"], dict):  # a bit-allocation result file
        data = data["bits"]
    return data
