"""Build a multiplier library: generate designs (+ ALS variants), characterise them in parallel, keep
the exact multiplier and the (energy, MRED) Pareto set per format, and save the library file.

Resuming an interrupted build costs nothing extra: every characterisation is cached by content.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fames.circuits.characterise import CLOCK_NS, characterise
from fames.errors import FamesError
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat
from fames.multipliers.library import Library, save_library

log = logging.getLogger(__name__)

# square formats for both activation signednesses, plus the mixed formats of the reference models
# (2- and 3-bit weights with 4-bit activations)
DEFAULT_FORMATS = (
    tuple(f"u{b}xs{b}" for b in range(2, 9)) + tuple(f"s{b}xs{b}" for b in range(2, 9)) + ("u4xs2", "u4xs3")
)

Progress = Callable[[int, int, str], None]  # (done, total, name of the item just finished)


# Small formats (a_bits + w_bits <= SMALL_BITS) have few generator designs and coarse ALS steps, so
# their front would be sparse: ALS there keeps the Pareto set of every evaluated candidate (not only the
# greedy steps), evaluates every candidate with more replacement nets, keeps SMALL_N_MAX_FACTOR times
# more variants, and also starts from yosys' own exact multiplier and from SMALL_BASES approximate
# generator designs (spread over the more accurate half).
# Larger formats use the plain greedy run from the exact.
SMALL_BITS = 8
SMALL_N_MAX_FACTOR = 6
SMALL_BASES = 6


# Small formats also get near-exact variants by single resubstitutions (a net replaced by a new
# two-input gate of other nets, see `als.resub_search`) of three exact architectures (`resub_bases`):
# ALS' constant/net moves err on too many code pairs there, so the front started at 14 % saving for
# u3xs3. Up to RESUB_N_MAX variants per start with MRED <= RESUB_MAX_MRED are characterised; the
# Pareto pruning keeps those that pay off.
RESUB_N_MAX = 32
RESUB_MAX_MRED = 0.03
# ... and from each start an energy-guided chain of resubstitutions (`als.resub_chain`: every step is
# characterised, MRED stays <= CHAIN_MAX_MRED): near-exact entries with 5-20 % saving, the finer steps
# the DNN selection needs on its heavy low-bit layers.
CHAIN_STEPS = 8
CHAIN_MAX_MRED = 0.02


def _is_small(fmt: OperandFormat) -> bool:
    # 2x2 formats are covered by the exhaustive enumeration of their output functions instead
    return fmt.a_bits + fmt.w_bits <= SMALL_BITS and not (fmt.a_bits == 2 and fmt.w_bits == 2)


def _als_steps(fmt: OperandFormat) -> int:
    return 40 if fmt.a_bits + fmt.w_bits <= 10 else 20


def _als_job(item: tuple[str, str, str, int, int, bool]) -> list[tuple[str, str, np.ndarray, dict]]:
    from fames.circuits.als import als_variants

    verilog, top, fmt_name, n_max, seed, keep_candidates = item
    fmt = OperandFormat.parse(fmt_name)
    steps = _als_steps(fmt)
    return als_variants(
        verilog,
        top,
        fmt,
        n_max=n_max,
        seed=seed,
        max_steps=steps,
        # small formats: every candidate evaluated (a few hundred, at most 256 patterns each), with
        # more near-identical replacement nets (e.g. an MSB by its neighbour: error at one corner only)
        max_candidates=1000 if keep_candidates else 150,
        similar=4 if keep_candidates else 2,
        max_mred=1.0 if keep_candidates else 0.5,  # and down to the cheap end of the front
        keep_candidates=keep_candidates,
    )


def _resub_job(item: tuple[str, str, str, float]) -> list[tuple[str, str, np.ndarray, dict]]:
    from fames.circuits.als import resub_chain, resub_variants

    verilog, top, fmt_name, clock_ns = item
    fmt = OperandFormat.parse(fmt_name)
    singles = resub_variants(verilog, top, fmt, n_max=RESUB_N_MAX, max_mred=RESUB_MAX_MRED)
    chain = resub_chain(verilog, top, fmt, steps=CHAIN_STEPS, max_mred=CHAIN_MAX_MRED, clock_ns=clock_ns)
    return singles + chain


def _mred(fmt: OperandFormat, table: np.ndarray) -> float:
    exact = fmt.exact_table()
    nz = exact != 0
    return float((np.abs(np.asarray(table) - exact)[nz] / np.abs(exact[nz])).mean())


@dataclass(frozen=True)
class _AlsBase:
    """A start point of ALS that is not itself a library candidate."""

    name: str
    family: str
    verilog: str
    top: str


def mulop_base(fmt: OperandFormat) -> _AlsBase:
    """The exact product written as one ``*`` (yosys' own multiplier), an ALS start point only.

    Its mapped netlist differs from the structural exact one and offers other near-exact
    simplifications (ALS writes every variant as a gate-level netlist, so no variant is behavioural).
    """
    top = f"{fmt.name}_mulop"
    p = fmt.a_bits + fmt.w_bits
    if fmt.a_signed or fmt.w_signed:
        sa = "$signed(a)" if fmt.a_signed else "$signed({1'b0, a})"
        sb = "$signed(b)" if fmt.w_signed else "$signed({1'b0, b})"
        expr = f"{sa} * {sb}"
    else:
        expr = "a * b"
    verilog = (
        f"module {top}(input [{fmt.a_bits - 1}:0] a, input [{fmt.w_bits - 1}:0] b, output [{p - 1}:0] y);\n"
        f"  assign y = {expr};\nendmodule\n"
    )
    return _AlsBase(top, "mulop", verilog, top)


def als_bases(fmt: OperandFormat, designs: list) -> list:
    """Designs ALS starts from: the exact one; for small formats also yosys' ``*`` (see `mulop_base`)
    and some of the more accurate approximate designs."""
    exact = next(d for d in designs if d.family == "exact")
    if not _is_small(fmt):
        return [exact]
    approx = [(_mred(fmt, d.table), d.name, d) for d in designs if d.family != "exact"]
    approx = [p for p in approx if p[0] > 0]
    approx.sort(key=lambda p: (p[0], p[1]))
    # the most accurate half, spread evenly: each start fills a different stretch of the front
    half = approx[: max(SMALL_BASES, (len(approx) + 1) // 2)]
    picks = np.unique(np.linspace(0, len(half) - 1, min(SMALL_BASES, len(half))).round().astype(int))
    return [exact, mulop_base(fmt)] + [half[k][2] for k in picks]


def array_base(fmt: OperandFormat) -> _AlsBase:
    """The exact product as a carry-save array (a broken-array multiplier with nothing broken), a
    resubstitution start point only: another exact architecture, with other near-exact simplifications."""
    from fames.circuits.generators import broken_array

    d = broken_array(fmt, 0, 0)
    top = f"{fmt.name}_array"
    return _AlsBase(top, "array", d.verilog.replace(f"module {d.top}(", f"module {top}(", 1), top)


def resub_bases(fmt: OperandFormat, designs: list) -> list:
    """Designs the near-exact resubstitution starts from: the exact one, the exact carry-save array and
    yosys' own multiplier (`mulop_base`; e.g. u4xs2's near-exact variants come from it)."""
    return [next(d for d in designs if d.family == "exact"), array_base(fmt), mulop_base(fmt)]


def _char_job(item: tuple[str, str, str, list, float]) -> tuple[str, dict | None, str | None]:
    top, verilog, fmt_name, table, clock_ns = item
    fmt = OperandFormat.parse(fmt_name)
    try:
        hw, _, _ = characterise(verilog, top, fmt, clock_ns=clock_ns, expected_table=np.asarray(table))
    except (FamesError, ValueError, RuntimeError) as exc:
        return top, None, f"{type(exc).__name__}: {exc}"
    return top, hw.to_dict(), None


def _run(fn, items: list, jobs: int, progress: Progress | None, names: list[str]) -> list:
    """Map `fn` over `items` (in a process pool when jobs > 1), results in input order."""
    results: list[Any] = [None] * len(items)
    if jobs <= 1:
        for k, item in enumerate(items):
            results[k] = fn(item)
            if progress:
                progress(k + 1, len(items), names[k])
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(fn, item): k for k, item in enumerate(items)}
        from concurrent.futures import as_completed

        for done, fut in enumerate(as_completed(futures), 1):
            k = futures[fut]
            results[k] = fut.result()
            if progress:
                progress(done, len(items), names[k])
    return results


def candidate_designs(fmt: OperandFormat) -> list:
    """Generator designs of `fmt` (exact first; 2x2 simplifications too for 2x2 formats), unique names."""
    from fames.circuits.generators import enumerate_2x2, enumerate_designs

    designs = list(enumerate_designs(fmt))
    if fmt.a_bits == 2 and fmt.w_bits == 2:
        designs += list(enumerate_2x2(fmt))
    unique: dict[str, Any] = {}
    for d in designs:
        unique.setdefault(d.name, d)
    return list(unique.values())


def build_library(
    formats: Sequence[OperandFormat | str] = DEFAULT_FORMATS,
    out_path: str | Path | None = None,
    jobs: int = 2,
    *,
    als: bool = True,
    als_n_max: int = 4,
    metric: str = "mred",
    clock_ns: float = CLOCK_NS,
    seed: int = 0,
    progress: Progress | None = None,
) -> Library:
    """Generate, characterise and prune multipliers of every format; save to `out_path` when given.

    Raises:
        FamesError: listing the designs whose circuit did not match their table (never silently dropped).
    """
    fmts = [f if isinstance(f, OperandFormat) else OperandFormat.parse(f) for f in formats]
    per_fmt = {fmt.name: candidate_designs(fmt) for fmt in fmts}
    items: list[tuple[OperandFormat, str, str, str, np.ndarray, dict]] = []
    for fmt in fmts:
        for d in per_fmt[fmt.name]:
            items.append((fmt, d.name, d.family, d.verilog, np.asarray(d.table), dict(d.params)))
    if als:
        bases = [(f, d) for f in fmts for d in als_bases(f, per_fmt[f.name])]
        als_items = [
            (
                d.verilog,
                d.top,
                f.name,
                als_n_max * SMALL_N_MAX_FACTOR if _is_small(f) else als_n_max,
                seed,
                _is_small(f),
            )
            for f, d in bases
        ]
        variants = _run(_als_job, als_items, jobs, progress, [f"ALS {d.name}" for _, d in bases])
        for (fmt, base), found in zip(bases, variants, strict=True):
            for k, (verilog, top, table, params) in enumerate(found):
                name = f"{base.name}_als{k}"
                verilog = verilog.replace(f"module {top}(", f"module {name}(", 1)
                items.append((fmt, name, "als", verilog, table, params))
        resub_starts = [(f, d) for f in fmts if _is_small(f) for d in resub_bases(f, per_fmt[f.name])]
        resub = _run(
            _resub_job,
            [(d.verilog, d.top, f.name, clock_ns) for f, d in resub_starts],
            jobs,
            progress,
            [f"resub {d.name}" for _, d in resub_starts],
        )
        for (fmt, _), found in zip(resub_starts, resub, strict=True):
            for verilog, name, table, params in found:
                items.append((fmt, name, "als", verilog, table, params))
    jobs_in = [
        (name, verilog, fmt.name, table.tolist(), clock_ns) for fmt, name, _, verilog, table, _ in items
    ]
    results = _run(_char_job, jobs_in, jobs, progress, [it[1] for it in items])
    failures = [f"{top}: {err}" for top, _, err in results if err]
    if failures:
        raise FamesError(f"{len(failures)} design(s) failed characterisation: " + "; ".join(failures[:5]))
    from fames.multipliers.appmul import HardwareFigures

    muls = [
        AppMul(name, fmt, table, HardwareFigures.from_dict(hw), family, params, verilog)
        for (fmt, name, family, verilog, table, params), (_, hw, _) in zip(items, results, strict=True)
    ]
    # Pareto sets of all entries and of the zero-preserving ones, kept together: a multiplier with a
    # non-zero product for a zero operand is unusable in most DNN layers (see `als.search`), so on
    # its own front it must not hide the zero-preserving designs it dominates in (energy, MRED).
    overall = Library(muls).prune_pareto(metric)
    zero_safe = Library(m for m in muls if m.zero_preserving or m.is_exact).prune_pareto(metric)
    keep = {m.name for m in overall} | {m.name for m in zero_safe}
    lib = Library(m for m in muls if m.name in keep)
    log.info("library: %d of %d characterised multipliers kept", len(lib), len(muls))
    if out_path is not None:
        save_library(lib, out_path)
    return lib
