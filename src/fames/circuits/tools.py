"""Locating the EDA tools (yosys, yosys-abc, OpenSTA) and the OSU 0.18 um liberty; running them.

This is the only module of fames that starts subprocesses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LIBERTY_NAME = "osu018_stdcells.lib"
_DEBIAN_LIBERTY = Path("/usr/share/qflow/tech/osu018") / LIBERTY_NAME
_INSTALL_DIR = Path("/usr/local/share/fames/osu018")  # where scripts/install_liberty.sh puts it
_FIX = "install it with `apt-get install yosys opensta qflow-tech-osu018` or run `make deps`"


def cache_root() -> Path:
    """Root of fames' caches: ``$FAMES_CACHE`` or ``~/.cache/fames``."""
    env = os.environ.get("FAMES_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fames"


def liberty_candidates() -> list[Path]:
    """Where the liberty is looked for, in order (``$FAMES_LIBERTY`` first)."""
    paths = []
    if os.environ.get("FAMES_LIBERTY"):
        paths.append(Path(os.environ["FAMES_LIBERTY"]).expanduser())
    paths += [
        _DEBIAN_LIBERTY,
        _INSTALL_DIR / LIBERTY_NAME,
        Path.home() / ".cache" / "fames" / "osu018" / LIBERTY_NAME,
        cache_root() / "osu018" / LIBERTY_NAME,
    ]
    return paths


def find_liberty() -> Path:
    """Path of the OSU 0.18 um liberty.

    Raises:
        FileNotFoundError: naming the package and the fix when it is nowhere.
    """
    env = os.environ.get("FAMES_LIBERTY")
    if env and not Path(env).expanduser().is_file():
        raise FileNotFoundError(f"FAMES_LIBERTY={env} is not a file")
    for path in liberty_candidates():
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"standard-cell liberty {LIBERTY_NAME} not found (package qflow-tech-osu018): "
        "run `make deps` (scripts/install_liberty.sh) or set FAMES_LIBERTY=/path/to/osu018_stdcells.lib"
    )


@lru_cache(maxsize=8)
def _file_sha256(path: str, mtime: float) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def liberty_hash(path: Path) -> str:
    """sha256 of the liberty file (part of every characterisation cache key)."""
    return _file_sha256(str(path), path.stat().st_mtime)


def find_tool(name: str) -> str:
    """Absolute path of executable `name` (``yosys``, ``yosys-abc``, ``sta``).

    Raises:
        RuntimeError: naming the package and the fix when it is not on PATH.
    """
    env = os.environ.get(f"FAMES_{name.upper().replace('-', '_')}")
    path = env or shutil.which(name)
    if not path:
        package = {"sta": "opensta", "yosys-abc": "yosys"}.get(name, name)
        raise RuntimeError(f"`{name}` not found on PATH (Debian package {package}): {_FIX}")
    return path


@dataclass(frozen=True)
class ToolResult:
    """Captured outcome of one tool run."""

    returncode: int
    stdout: str
    stderr: str


def run_tool(args: list[str], *, cwd: Path | None = None, timeout: float = 300.0) -> ToolResult:
    """Run a tool with captured output and a timeout.

    Raises:
        RuntimeError: when the tool times out.
    """
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{Path(args[0]).name} timed out after {timeout:.0f} s") from exc
    return ToolResult(proc.returncode, proc.stdout, proc.stderr)
