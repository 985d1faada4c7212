"""``verilog/``: the chosen multipliers as Verilog files plus a manifest (JSON and CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

MANIFEST_FIELDS = ("layer", "operand_format", "multiplier", "macs", "energy_per_op_pj", "verilog")


def write_verilog(layers: list[dict[str, Any]], library: Any, out_dir: Path) -> Path:
    """Write one ``<multiplier>.v`` per distinct chosen multiplier and ``manifest.json``/``manifest.csv``.

    Args:
        layers: per-layer rows of `RunResult.layers` (``name``, ``format``, ``multiplier``, ``macs``,
            ``energy_per_op_pj``).
        library: the `Library` holding the multipliers.
        out_dir: the report folder; ``verilog/`` is created inside.

    Returns:
        The ``verilog/`` folder. A multiplier without Verilog in its library entry gets ``verilog: null``
        and a note in the manifest.
    """
    vdir = Path(out_dir) / "verilog"
    vdir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {}
    for row in layers:
        name = row["multiplier"]
        if name in files:
            continue
        source = library.get(name).verilog
        if source:
            (vdir / f"{name}.v").write_text(source if source.endswith("\n") else source + "\n")
            files[name] = f"{name}.v"
        else:
            files[name] = None
    rows = [{"layer": r["name"], "operand_format": r["format"], "multiplier": r["multiplier"],
             "macs": r["macs"], "energy_per_op_pj": r["energy_per_op_pj"], "verilog": files[r["multiplier"]]}
            for r in layers]
    missing = sorted(n for n, f in files.items() if f is None)
    manifest = {"layers": rows, "multipliers": files,
                "note": (f"no Verilog in the library for: {', '.join(missing)}" if missing else None)}
    (vdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with open(vdir / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "verilog": r["verilog"] or "(none in library)"})
    return vdir
