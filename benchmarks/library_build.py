"""Library rebuild benchmark: rebuild the built-in multiplier library, time it, check it byte-for-byte.

Run (from the repository root; needs yosys, yosys-abc, OpenSTA and the OSU 0.18 um liberty):

    python benchmarks/library_build.py [--cold]

It runs the same build as ``fames lib build`` (all `DEFAULT_FORMATS`, ALS on) into a temporary file,
times it, and compares the file byte-for-byte with the shipped ``src/fames/assets/multipliers/builtin.npz``.
Without ``--cold`` the characterisation cache (``$FAMES_CACHE`` or ``~/.cache/fames``) is used, so
already characterised designs cost nothing and the time is that of a re-run; with ``--cold`` the build
uses a fresh, empty cache directory, so the wall time is that of a real rebuild from scratch.

Writes ``benchmarks/results/library_build.json`` and ``.md``: wall time, cache mode, machine load,
whether the output is identical to the shipped file, entries per format, and per format the exact
multiplier's energy / area / delay, the number of Pareto-optimal approximate entries (energy vs MRED,
exact excluded) and their min / max energy saving against the exact; plus a table of the exact
multipliers' energy per operation for every square format 2x2..8x8 (it rises with b_a x b_w).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CRITERION = {"min_pareto": 12, "max_low_saving_pct": 10.0, "min_high_saving_pct": 60.0}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def format_stats(lib) -> list[dict]:
    """Per format: entries, exact figures, Pareto-optimal approximate entries and their savings."""
    rows = []
    for fmt in lib.formats():
        ex = lib.exact(fmt)
        front = [m for m in lib.pareto(fmt, "mred") if not m.is_exact]
        savings = [100.0 * (1.0 - m.energy_pj / ex.energy_pj) for m in front]
        square = fmt.a_bits == fmt.w_bits and fmt.a_bits >= 3
        ok = (
            len(front) >= CRITERION["min_pareto"]
            and bool(savings)
            and min(savings) <= CRITERION["max_low_saving_pct"]
            and max(savings) >= CRITERION["min_high_saving_pct"]
        )
        rows.append(
            {
                "format": fmt.name,
                "entries": sum(1 for m in lib if m.fmt == fmt),
                "exact_name": ex.name,
                "exact_energy_pj": ex.energy_pj,
                "exact_area_um2": ex.hardware.area_um2,
                "exact_delay_ns": ex.hardware.delay_ns,
                "exact_cells": ex.hardware.cells,
                "pareto_approx": len(front),
                "min_saving_pct": min(savings) if savings else None,
                "max_saving_pct": max(savings) if savings else None,
                "criterion_applies": square,
                "criterion_met": ok if square else None,
            }
        )
    return rows


def exact_energy_table(lib) -> list[dict]:
    """Exact multiplier energy per operation for the square formats 2x2..8x8 (both signednesses)."""
    rows = []
    for b in range(2, 9):
        row = {"bits": b, "product_bits": b * b}
        for sign in ("u", "s"):
            name = f"{sign}{b}xs{b}"
            row[name[:1] + "xs"] = lib.exact(name).energy_pj if name in {f.name for f in lib.formats()} else None
        rows.append(row)
    return rows


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def to_markdown(rec: dict) -> str:
    lines = [
        "# Built-in multiplier library rebuild",
        "",
        f"Command: `python benchmarks/library_build.py{' --cold' if rec['cold'] else ''}` "
        f"({'fresh empty cache: a real rebuild' if rec['cold'] else 'warm characterisation cache'}), "
        f"jobs={rec['jobs']}, {rec['cpus']} CPUs, load average before {rec['load_avg_before']}, "
        f"after {rec['load_avg_after']}.",
        "",
        f"- wall time: **{rec['wall_s']:.0f} s** ({rec['wall_s'] / 60:.1f} min)",
        f"- entries: {rec['entries']} in {len(rec['formats'])} formats; file {rec['bytes']} bytes",
        f"- byte-identical to the shipped `builtin.npz`: **{rec['identical_to_shipped']}** "
        f"(sha256 {rec['sha256'][:16]}..., shipped {str(rec['shipped_sha256'])[:16]}...)",
        "",
        "## Per format (energy vs MRED front; savings against the format's exact multiplier)",
        "",
        "| format | entries | exact energy (pJ/op) | exact area (um^2) | exact delay (ns) "
        "| Pareto approx | min saving % | max saving % | criterion (3x3..8x8) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rec["formats"]:
        crit = "-" if r["criterion_met"] is None else ("met" if r["criterion_met"] else "**not met**")
        lines.append(
            f"| {r['format']} | {r['entries']} | {r['exact_energy_pj']:.4f} | {r['exact_area_um2']:.0f} "
            f"| {r['exact_delay_ns']:.3f} | {r['pareto_approx']} | {_fmt(r['min_saving_pct'], '.1f')} "
            f"| {_fmt(r['max_saving_pct'], '.1f')} | {crit} |"
        )
    lines += [
        "",
        f"Criterion: >= {CRITERION['min_pareto']} Pareto-optimal approximate entries whose savings reach from "
        f"<= {CRITERION['max_low_saving_pct']:.0f} % to >= {CRITERION['min_high_saving_pct']:.0f} %.",
        "",
        "## Exact multiplier energy per operation (square formats)",
        "",
        "| b_a = b_w | b_a x b_w | unsigned x signed (pJ/op) | signed x signed (pJ/op) |",
        "|---|---|---|---|",
    ]
    for r in rec["exact_energy"]:
        lines.append(f"| {r['bits']} | {r['product_bits']} | {_fmt(r['uxs'], '.4f')} | {_fmt(r['sxs'], '.4f')} |")
    lines += ["", f"Energy rises with b_a x b_w: **{rec['exact_energy_monotonic']}**.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="build with a fresh, empty characterisation cache")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2, as shipped)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where to write the records")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fames-libbuild-") as tmp:
        if args.cold:
            os.environ["FAMES_CACHE"] = str(Path(tmp, "cache"))  # read at call time, inherited by workers
        from fames.circuits.build import DEFAULT_FORMATS, build_library
        from fames.multipliers.library import builtin_library_path, load_library

        out = Path(tmp, "builtin.npz")
        load_before = [round(x, 2) for x in os.getloadavg()]
        t0 = time.perf_counter()
        build_library(list(DEFAULT_FORMATS), out, jobs=args.jobs)
        wall = time.perf_counter() - t0
        load_after = [round(x, 2) for x in os.getloadavg()]
        shipped = builtin_library_path()
        identical = shipped.is_file() and shipped.read_bytes() == out.read_bytes()
        lib = load_library(out)
        rec = {
            "benchmark": "library_build",
            "cold": args.cold,
            "jobs": args.jobs,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": sys.version.split()[0],
            "load_avg_before": load_before,
            "load_avg_after": load_after,
            "wall_s": wall,
            "entries": len(lib),
            "bytes": out.stat().st_size,
            "sha256": _sha256(out),
            "shipped_sha256": _sha256(shipped) if shipped.is_file() else None,
            "identical_to_shipped": bool(identical),
            "criterion": CRITERION,
            "formats": format_stats(lib),
            "exact_energy": exact_energy_table(lib),
        }
    rec["exact_energy_monotonic"] = all(
        all(x[k] < y[k] for x, y in zip(rec["exact_energy"], rec["exact_energy"][1:], strict=False))
        for k in ("uxs", "sxs")
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "library_build.json").write_text(json.dumps(rec, indent=2) + "\n")
    md = to_markdown(rec)
    (args.out_dir / "library_build.md").write_text(md)
    print(md)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
