"""fames: fast approximate multiplier substitution for mixed-precision quantized DNNs."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy exports: ``fames.select`` (the selection flow) without importing torch at package import."""
    if name == "select":
        from fames.selection.api import select

        return select
    if name in ("sensitivity", "selection", "energy", "data"):
        import importlib

        return importlib.import_module(f"fames.{name}")
    raise AttributeError(f"module 'fames' has no attribute {name!r}")
