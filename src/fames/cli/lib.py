"""`fames lib`: build, list, show, import, export and plot multiplier libraries."""

from __future__ import annotations

import argparse
from pathlib import Path

from fames.errors import UsageError

EXAMPLES = """examples:
  fames lib build --formats u4xs4,s8xs8 --jobs 2 -o mylib.npz
  fames lib list --format u4xs4
  fames lib show u4xs4_exact --json
  fames lib import mymul.v --format u4xs4 --name my_mul
  fames lib export-verilog u4xs4_trunc_k2 -o trunc.v
  fames lib plot -o fronts.png
"""


def register(subparsers) -> None:
    """Add the ``lib`` command group to the top-level subparsers."""
    p = subparsers.add_parser(
        "lib",
        help="multiplier libraries (build, list, show, import, export, plot)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="lib_command", metavar="ACTION")
    sub.required = True

    b = sub.add_parser("build", help="generate and characterise multipliers (needs yosys, OpenSTA, liberty)")
    b.add_argument("--formats", help="comma-separated formats, e.g. u4xs4,s8xs8 (default: u2..8xs, s2..8xs)")
    b.add_argument("--jobs", type=int, default=2, help="parallel characterisations (default 2)")
    b.add_argument("--no-als", action="store_true", help="skip approximate logic synthesis variants")
    b.add_argument("-o", "--out", help="library file to write (default: the built-in library)")
    b.set_defaults(handler=run_build)

    ls = sub.add_parser("list", help="list the multipliers of a library")
    ls.add_argument("--format", help="only this operand format, e.g. u4xs4")
    ls.add_argument("--library", help="library file (default: built-in)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=run_list)

    sh = sub.add_parser("show", help="one multiplier: figures, metrics and full table")
    sh.add_argument("name")
    sh.add_argument("--library", help="library file (default: built-in)")
    sh.add_argument("--json", action="store_true", help="print JSON")
    sh.set_defaults(handler=run_show)

    im = sub.add_parser("import", help="characterise your own multiplier (.v, .blif, .csv, .npy)")
    im.add_argument("file")
    im.add_argument("--format", required=True, help="operand format, e.g. u4xs4")
    im.add_argument("--name", help="name of the multiplier (default: the module name)")
    im.add_argument("--top", help="top module (default: the one no other module instantiates)")
    im.add_argument("--into", help="add it to this library file (created with an exact multiplier if needed)")
    im.add_argument("--json", action="store_true", help="print JSON")
    im.set_defaults(handler=run_import)

    ex = sub.add_parser("export-verilog", help="write a multiplier's Verilog")
    ex.add_argument("name")
    ex.add_argument("-o", "--out", required=True, help="Verilog file to write")
    ex.add_argument("--library", help="library file (default: built-in)")
    ex.set_defaults(handler=run_export)

    pl = sub.add_parser("plot", help="energy vs MRED fronts per format (PNG)")
    pl.add_argument("--format", help="comma-separated formats (default: all)")
    pl.add_argument("--library", help="library file (default: built-in)")
    pl.add_argument("-o", "--out", required=True, help="PNG file to write")
    pl.set_defaults(handler=run_plot)


def _formats(text: str | None) -> list:
    from fames.multipliers.formats import OperandFormat

    if not text:
        return []
    try:
        return [OperandFormat.parse(t) for t in text.replace(" ", ",").split(",") if t]
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _library(path: str | None):
    from fames.multipliers.library import builtin_library, load_library

    try:
        return load_library(path) if path else builtin_library()
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None


def _get(lib, name: str):
    try:
        return lib.get(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def describe(m) -> dict:
    """JSON-ready summary of one multiplier (hardware figures and uniform error metrics)."""
    return {
        "name": m.name,
        "format": m.fmt.name,
        "family": m.family,
        "params": m.params,
        "hardware": m.hardware.to_dict() if m.hardware else None,
        "metrics": m.metrics().to_dict(),
    }


def run_build(args: argparse.Namespace) -> int:
    from fames.circuits.build import DEFAULT_FORMATS, build_library
    from fames.cli.common import Progress
    from fames.multipliers.library import builtin_library_path

    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    formats = _formats(args.formats) or list(DEFAULT_FORMATS)
    out = Path(args.out) if args.out else builtin_library_path()
    bar = Progress("characterising")
    lib = build_library(
        formats,
        out,
        jobs=args.jobs,
        als=not args.no_als,
        progress=lambda done, total, name: bar(done, total, {"design": name}),
    )
    bar.close()
    print(f"wrote {out}: {len(lib)} multipliers in {len(lib.formats())} formats")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from fames.cli.common import print_json

    lib = _library(args.library)
    fmts = _formats(args.format)
    rows = [describe(m) for m in lib if not fmts or m.fmt in fmts]
    if args.json:
        print_json(rows)
        return 0
    head = f"{'name':34} {'format':7} {'family':10} {'area um2':>9} {'delay ns':>8} {'energy pJ':>9}"
    print(f"{head} {'MRED':>8}")
    for r in rows:
        hw = r["hardware"] or {}
        print(
            f"{r['name']:34} {r['format']:7} {r['family']:10} {hw.get('area_um2', float('nan')):9.1f} "
            f"{hw.get('delay_ns', float('nan')):8.3f} {hw.get('energy_pj', float('nan')):9.4f} "
            f"{r['metrics']['mred']:8.4f}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from fames.cli.common import print_json

    m = _get(_library(args.library), args.name)
    info = describe(m) | {
        "a_codes": m.fmt.a_codes().tolist(),
        "w_codes": m.fmt.w_codes().tolist(),
        "table": m.table.tolist(),
    }
    if args.json:
        print_json(info)
        return 0
    for key in ("name", "format", "family", "params", "hardware", "metrics"):
        print(f"{key:9} {info[key]}")
    print("table (rows: activation codes, columns: weight codes)")
    print("       " + " ".join(f"{v:>6}" for v in info["w_codes"]))
    for u, row in zip(info["a_codes"], info["table"], strict=True):
        print(f"{u:>6} " + " ".join(f"{x:>6}" for x in row))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from fames.circuits.importers import import_multiplier
    from fames.cli.common import print_json
    from fames.multipliers.appmul import AppMul
    from fames.multipliers.library import Library, load_library, save_library

    fmt = _formats(args.format)[0]
    if not Path(args.file).is_file():
        raise UsageError(f"multiplier file {args.file} does not exist")
    try:
        m = import_multiplier(args.file, fmt, name=args.name, top=args.top)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    if args.into:
        lib = load_library(args.into) if Path(args.into).is_file() else Library()
        if m.name in lib:
            raise UsageError(f"{args.into} already has a multiplier named {m.name!r}: pick another --name")
        if not any(x.fmt == fmt and x.is_exact for x in lib):
            lib.add(AppMul.exact(fmt))
        lib.add(m)
        save_library(lib, args.into)
    if args.json:
        print_json(describe(m))
    else:
        hw = m.hardware
        print(
            f"{m.name} ({fmt.name}): area {hw.area_um2:.1f} um2, delay {hw.delay_ns:.3f} ns, "
            f"energy {hw.energy_pj:.4f} pJ, MRED {m.metrics().mred:.4f}"
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    m = _get(_library(args.library), args.name)
    if not m.verilog:
        raise UsageError(f"multiplier {m.name!r} has no Verilog in the library")
    Path(args.out).write_text(m.verilog)
    print(f"wrote {args.out}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lib = _library(args.library)
    fmts = _formats(args.format) or lib.formats()
    fig, ax = plt.subplots(figsize=(7, 5))
    for fmt in fmts:
        front = lib.pareto(fmt)
        if not front:
            continue
        xs, ys = [lib.metric(m) for m in front], [m.energy_pj for m in front]
        (line,) = ax.plot(xs, ys, "o-", ms=3, label=fmt.name)
        exact = lib.exact(fmt)
        if exact.hardware:
            ax.plot([0.0], [exact.energy_pj], "*", ms=12, color=line.get_color())
    ax.set_xlabel("MRED")
    ax.set_ylabel("energy per multiplication (pJ)")
    ax.set_title("energy vs MRED (star: exact multiplier)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0
