"""A library of AppMuls (ordered, unique names) and its file format.

File format, version 1 (``.npz``; a plain zip that ``numpy.load`` can also open):

- ``metadata.json``: UTF-8 JSON ``{"format_version": 1, "entries": [...]}``, keys sorted, where entry
  ``k`` is ``{"name", "format": OperandFormat.to_dict(), "family", "params", "hardware":
  HardwareFigures.to_dict() or null, "verilog": str or null, "error": "e00000.npy", "error_dtype": "int8"}``;
- ``e00000.npy``, ``e00001.npy``, ...: entry k's *error table* ``E = T - u v^T`` (zero for an exact
  multiplier; small for useful ones, so it compresses far better than ``T``) in the smallest signed
  dtype that holds it (``error_dtype``: int8/int16/int32/int64). It is stored as a uint8 npy array of
  shape ``(itemsize, |A|, |W|)`` whose plane ``b`` is byte ``b`` of the little-endian values (byte
  planes compress better); for int8 that is one plane.

Members are deflate-compressed with a fixed timestamp (1980-01-01) and fixed permissions, in entry
order, so saving the same entries twice gives byte-identical files.

Example:
    >>> from fames.multipliers import AppMul, OperandFormat
    >>> lib = Library([AppMul.exact(OperandFormat.parse("u2xs2"))])
    >>> lib.exact(OperandFormat.parse("u2xs2")).name
    'u2xs2_exact'
"""

from __future__ import annotations

import difflib
import io
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from fames.multipliers.appmul import AppMul, HardwareFigures
from fames.multipliers.formats import OperandFormat
from fames.multipliers.metrics import ErrorMetrics

FORMAT_VERSION = 1
_METRICS = tuple(ErrorMetrics.__dataclass_fields__)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class Library:
    """Ordered collection of AppMuls with unique names.

    Args:
        entries: initial multipliers, added in order.
    """

    def __init__(self, entries: Iterable[AppMul] = ()) -> None:
        self._entries: dict[str, AppMul] = {}
        self._metrics: dict[tuple[str, str], float] = {}
        for m in entries:
            self.add(m)

    def add(self, mul: AppMul) -> None:
        """Append `mul`; raises ValueError if its name is taken, TypeError if it is not an AppMul."""
        if not isinstance(mul, AppMul):
            raise TypeError(f"Library.add expects an AppMul, got {type(mul).__name__}")
        if mul.name in self._entries:
            raise ValueError(f"multiplier name {mul.name!r} is already in the library")
        self._entries[mul.name] = mul

    def get(self, name: str) -> AppMul:
        """The multiplier called `name`; ValueError naming close matches if there is none."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._entries), n=5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"no multiplier named {name!r} in the library{hint}") from None

    def __iter__(self) -> Iterator[AppMul]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item: object) -> bool:
        name = item.name if isinstance(item, AppMul) else item
        return name in self._entries

    def __repr__(self) -> str:
        return f"Library({len(self)} multipliers, {len(self.formats())} formats)"

    def filter(self, fmt: OperandFormat | str | None = None, family: str | None = None) -> Library:
        """Sub-library of the entries matching `fmt` (object or name like ``u4xs4``) and/or `family`."""
        fmt = _as_format(fmt)
        return Library(
            m for m in self if (fmt is None or m.fmt == fmt) and (family is None or m.family == family)
        )

    def formats(self) -> list[OperandFormat]:
        """Operand formats present, in first-appearance order."""
        return list(dict.fromkeys(m.fmt for m in self))

    def exact(self, fmt: OperandFormat | str) -> AppMul:
        """The exact multiplier of `fmt` (family ``exact`` preferred); ValueError if there is none."""
        fmt = _as_format(fmt)
        candidates = [m for m in self if m.fmt == fmt and m.is_exact]
        if not candidates:
            raise ValueError(f"the library has no exact multiplier for format {fmt.name}")
        return next((m for m in candidates if m.family == "exact"), candidates[0])

    def check(self) -> None:
        """Raise ValueError unless every format present has an exact multiplier."""
        for fmt in self.formats():
            self.exact(fmt)

    def metric(self, mul: AppMul, metric: str = "mred") -> float:
        """Uniform error metric `metric` of `mul` (cached)."""
        if metric not in _METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(_METRICS)}")
        key = (mul.name, metric)
        if key not in self._metrics:
            for name, value in mul.metrics().to_dict().items():
                self._metrics[(mul.name, name)] = value
        return self._metrics[key]

    def pareto(self, fmt: OperandFormat | str, metric: str = "mred") -> list[AppMul]:
        """Characterised entries of `fmt` not dominated in (energy_pj, `metric`), by ascending energy.

        An entry is dominated when another is no worse in both and better in one; of identical points
        the first in library order is kept. Entries without hardware figures are ignored.
        """
        fmt = _as_format(fmt)
        pts = [
            (m.energy_pj, self.metric(m, metric), k, m)
            for k, m in enumerate(self)
            if m.fmt == fmt and m.hardware
        ]
        pts.sort(key=lambda p: (p[0], p[1], p[2]))
        front, best = [], float("inf")
        for _energy, err, _, m in pts:
            if err < best:
                front.append(m)
                best = err
        return front

    def prune_pareto(self, metric: str = "mred") -> Library:
        """New library keeping, per format, the Pareto set plus the exact multiplier, in library order.

        Uncharacterised entries are dropped, except the exact multipliers.
        """
        keep = {m.name for fmt in self.formats() for m in self.pareto(fmt, metric)}
        keep |= {self.exact(fmt).name for fmt in self.formats()}
        return Library(m for m in self if m.name in keep)


def _as_format(fmt: OperandFormat | str | None) -> OperandFormat | None:
    if fmt is None or isinstance(fmt, OperandFormat):
        return fmt
    return OperandFormat.parse(fmt)


def _small_dtype(table: np.ndarray) -> np.dtype:
    lo, hi = int(table.min()), int(table.max())
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt).newbyteorder("<")
    return np.dtype(np.int64).newbyteorder("<")


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 3
    zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def library_bytes(lib: Library) -> bytes:
    """The canonical file content of `lib` (see the module docstring)."""
    entries, blobs = [], []
    for k, m in enumerate(lib):
        member = f"e{k:05d}.npy"
        err = m.error_table
        dtype = _small_dtype(err)
        planes = err.astype(dtype).view(np.uint8).reshape(*err.shape, dtype.itemsize)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(np.moveaxis(planes, -1, 0)), allow_pickle=False)
        blobs.append((member, buf.getvalue()))
        entries.append(
            {
                "name": m.name,
                "format": m.fmt.to_dict(),
                "family": m.family,
                "params": m.params,
                "hardware": None if m.hardware is None else m.hardware.to_dict(),
                "verilog": m.verilog,
                "error": member,
                "error_dtype": dtype.name,
            }
        )
    meta = json.dumps(
        {"format_version": FORMAT_VERSION, "entries": entries}, sort_keys=True, default=_json_default
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        _zip_write(zf, "metadata.json", meta.encode("utf-8"))
        for member, data in blobs:
            _zip_write(zf, member, data)
    return out.getvalue()


def _json_default(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    raise TypeError(f"parameter value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def save_library(lib: Library, path: str | os.PathLike) -> Path:
    """Write `lib` to `path` atomically (temporary file, then rename), mode 0644. Returns the path.

    Raises:
        ValueError: when a format present has no exact multiplier.
    """
    lib.check()
    path = Path(path)
    data = library_bytes(lib)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # package data: mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_library(path: str | os.PathLike) -> Library:
    """Read a library file written by `save_library`.

    Raises:
        ValueError: one line naming the file when it is missing, unreadable, corrupt, of another
            format version, or lacks an exact multiplier for a format.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("metadata.json").decode("utf-8"))
            version = meta.get("format_version") if isinstance(meta, dict) else None
            if version != FORMAT_VERSION:
                raise ValueError(f"format_version {version!r}, this fames reads version {FORMAT_VERSION}")
            lib = Library()
            for e in meta["entries"]:
                fmt = OperandFormat.from_dict(e["format"])
                table = fmt.exact_table() + _read_error(zf.read(e["error"]), e["error_dtype"], fmt)
                hw = None if e["hardware"] is None else HardwareFigures.from_dict(e["hardware"])
                lib.add(AppMul(e["name"], fmt, table, hw, e["family"], e["params"], e["verilog"]))
            lib.check()
    except FileNotFoundError:
        raise ValueError(f"multiplier library {path} does not exist") from None
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError, EOFError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"cannot read multiplier library {path}: {reason}") from None
    return lib


def _read_error(blob: bytes, dtype_name: str, fmt: OperandFormat) -> np.ndarray:
    if dtype_name not in ("int8", "int16", "int32", "int64"):
        raise ValueError(f"unknown error_dtype {dtype_name!r}")
    dtype = np.dtype(dtype_name).newbyteorder("<")
    planes = np.load(io.BytesIO(blob), allow_pickle=False)
    if planes.dtype != np.uint8 or planes.shape != (dtype.itemsize, *fmt.shape):
        raise ValueError(f"error table has shape {planes.shape}, expected {(dtype.itemsize, *fmt.shape)}")
    return np.ascontiguousarray(np.moveaxis(planes, 0, -1)).view(dtype)[..., 0].astype(np.int64)


def builtin_library_path() -> Path:
    """Where the shipped library lives inside the package (it may not exist yet)."""
    return Path(str(resources.files("fames").joinpath("assets", "multipliers", "builtin.npz")))


def builtin_library() -> Library:
    """The library shipped with fames.

    Raises:
        FileNotFoundError: when the package has no built library (run ``fames lib build``).
    """
    path = builtin_library_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the built-in multiplier library {path} is missing: run `fames lib build` to create it"
        )
    return load_library(path)
