"""Per-layer bit settings: `{layer name or glob pattern: bits}` maps that round-trip through JSON."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fames.quant.lsq import check_bits


@dataclass(frozen=True)
class LayerBits:
    """Bits of one layer: weights (signed) and activations (signedness decided from data unless given)."""

    w: int
    a: int
    a_signed: bool | None = None

    def __post_init__(self) -> None:
        check_bits(self.w, "weight bits")
        check_bits(self.a, "activation bits")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"w": self.w, "a": self.a}
        if self.a_signed is not None:
            data["a_signed"] = self.a_signed
        return data


def parse_layer_bits(value: Any, where: str = "bits") -> LayerBits:
    """Accept ``4``, ``"4"``, ``{"w": 2, "a": 4}`` or a LayerBits; raise ValueError naming `where`."""
    if isinstance(value, LayerBits):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return LayerBits(check_bits(value, where), value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"w", "a", "a_signed"}
        if unknown or "w" not in value:
            raise ValueError(f"{where}: expected keys 'w', 'a' (and optional 'a_signed'), got {sorted(value)}")
        w = value["w"]
        a = value.get("a", w)
        for label, bits in (("w", w), ("a", a)):
            if isinstance(bits, str) and bits.strip().isdigit():
                bits = int(bits)
            check_bits(bits, f"{where}.{label}")
        return LayerBits(int(w), int(a), value.get("a_signed"))
    raise ValueError(f"{where}: bits must be an integer 2..8 or a {{'w': .., 'a': ..}} map, got {value!r}")


def is_pattern(key: str) -> bool:
    return any(ch in key for ch in "*?[")


def resolve_config(config: Mapping[str, Any], layer_names: list[str]) -> dict[str, LayerBits]:
    """Map every layer name to its bits. Exact names win over patterns; later patterns win over earlier.

    Raises:
        ValueError: a non-pattern key that names no quantizable layer, a pattern that matches nothing,
            or invalid bits.
    """
    resolved: dict[str, LayerBits] = {}
    names = set(layer_names)
    for key, value in config.items():
        if not is_pattern(key):
            continue
        matches = fnmatch.filter(layer_names, key)
        if not matches:
            raise ValueError(f"pattern {key!r} matches no Conv2d/Linear layer; layers are: {', '.join(layer_names)}")
        bits = parse_layer_bits(value, f"bits for {key!r}")
        for name in matches:
            resolved[name] = bits
    for key, value in config.items():
        if is_pattern(key):
            continue
        if key not in names:
            raise ValueError(f"unknown layer {key!r}: quantizable layers are {', '.join(layer_names)}")
        resolved[key] = parse_layer_bits(value, f"bits for {key!r}")
    return {name: resolved[name] for name in layer_names if name in resolved}
