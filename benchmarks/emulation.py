"""Emulation benchmark: approximate conv/linear vs the exact quantized layer vs unfold + gather.

Run (from the repository root):

    python benchmarks/emulation.py [--quick] [--device cpu|cuda] [--threads 1] [--models lenet,vgg,resnet]

Writes ``benchmarks/results/emulation.json`` and prints a Markdown table.

Timer: on CPU with ``--threads 1`` (the default) times are the calling thread's CPU time
(``time.thread_time``: with one torch thread every op runs on it), so that other jobs on shared cores do not
inflate them; wall-clock medians are recorded beside them (``*_wall_*``, ``wall_ratio``). ``--timer wall``
uses the wall clock throughout (always on CUDA).

Per case (operand format, layer shape, table kind) it times, interleaved and as medians over repeats
(the exact time is the median of all exact runs of that format and layer, pooled over its tables;
``min_ratio`` is the best-of-repeats ratio, steadier on a loaded machine):
the exact integer layer op (``F.conv2d``/``F.linear`` on codes, what `QConv2d.integer_op` does), the
approximate op (`fames.emulation.approx_conv2d`/`approx_linear` with the weight side planned once, as
`ApproxEmulator` does between calls; table preparation and weight planning are reported separately) and a
brute-force unfold + LUT-gather emulation (timed once per format and layer: it does
not depend on the table). Table kinds: ``random`` (full-rank noise on every entry), ``structured``
(truncation: partial products ``a_i w_j 2^(i+j)`` with ``i + j < k`` dropped, low rank), and library
entries of the built-in library (required: `fames lib build` makes it).

Peak memory (CPU): each variant runs once in a fresh child process; the child builds its inputs, resets
the kernel's resident-set high-water mark (``/proc/self/clear_refs`` = 5), runs the op once and reads
``VmHWM``. Reported: peak resident growth during the call plus the bytes of the inputs (codes and
weights), i.e. the working set of the call. The approximate call is made without a weight plan, so the
plan (the per-layer cache `ApproxEmulator` keeps between calls) is built inside the measured call and
counts. On CUDA, ``torch.cuda.max_memory_allocated`` is used.

Linear layers may run as exact int8 digit-pair matmuls (``int8`` in a case row; ``int8_pairs`` digit pairs in
``int8_matmuls`` K-concatenated int8 matmuls), conv layers as one oneDNN u8 x s8 conv over all terms (``int8``
in a conv row; ``int8_conv_columns`` input channels per activation channel: the terms, split into digits and
padded as `fames.emulation.plan.int8_conv_layout` lays them out). Where the int8 matmul is slow (CPUs without
VNNI) a linear row may run as a 1x1 conv instead (``int8_conv_columns`` set, no pairs). The table's *int8*
column shows a linear row's pairs and the columns (``c``) of a conv row or a 1x1-conv linear row. ``R_extra`` is
still the number of factorisation terms minus one, i.e. the channel blocks the float path would use.

The library is copied once at start (``--library``, default the built-in library file) and every
library lookup of the run, memory probes included, reads that snapshot; its path and SHA-1 are recorded.

It also reports the distribution of R (extra terms of the cheapest exact form), rank(E) and non-zero
rows/columns over the built-in library, and times the whole reference models (``--models``) on the 10k
Fashion-MNIST test images, exact vs emulated (each layer: the middle-energy Pareto entry of its format).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fames.emulation import approx_conv2d, approx_linear, approximate_, prepare
from fames.emulation.functional import (
    clear_workspace,
    plan_conv2d_weight,
    plan_linear_weight,
)
from fames.emulation.plan import int8_pairs
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "emulation.json"
CONV = {"kind": "conv", "name": "conv N256 32->32 14x14 k3 p1", "n": 256, "cin": 32, "cout": 32, "hw": 14,
        "k": 3, "pad": 1}
LINEAR = {"kind": "linear", "name": "linear N256 800->500", "n": 256, "cin": 800, "cout": 500}


# ----------------------------------------------------------------------------- tables
def truncation(fmt: OperandFormat, k: int) -> np.ndarray:
    """Drop partial products ``a_i w_j 2^(i+j)`` with ``i + j < k`` (two's complement sign weights)."""
    def bits(codes: np.ndarray, n: int, signed: bool) -> np.ndarray:
        weight = 2 ** np.arange(n)
        if signed:
            weight[-1] = -weight[-1]
        return ((codes[:, None] >> np.arange(n)) & 1) * weight
    keep = (np.arange(fmt.a_bits)[:, None] + np.arange(fmt.w_bits)[None, :]) >= k
    return np.einsum("ai,wj,ij->aw", bits(fmt.a_codes(), fmt.a_bits, fmt.a_signed),
                     bits(fmt.w_codes(), fmt.w_bits, fmt.w_signed), keep.astype(np.int64))


def random_table(fmt: OperandFormat, seed: int) -> np.ndarray:
    exact = fmt.exact_table()
    scale = max(1, int(np.abs(exact).max()) // 8)
    return exact + np.random.default_rng(seed).integers(-scale, scale + 1, size=exact.shape)


LIBRARY: dict = {"path": None, "lib": None}  # one snapshot of the library file for the whole run


def library():
    """The library of this run: loaded once from `LIBRARY["path"]` (a snapshot the run made of the
    built-in library, or ``--library``), so that a library rebuilt while the benchmark runs cannot mix in."""
    from fames.multipliers.library import builtin_library, load_library

    if LIBRARY["lib"] is None:
        LIBRARY["lib"] = load_library(LIBRARY["path"]) if LIBRARY["path"] else builtin_library()
    return LIBRARY["lib"]


def library_entries(fmt: OperandFormat, quick: bool) -> tuple[str, list[AppMul]]:
    """Approximate entries of the built-in library for `fmt` (a spread subset in quick mode)."""
    lib = library()
    muls = [m for m in lib if m.fmt == fmt and not m.is_exact]
    if quick and len(muls) > 6:
        muls = muls[:: max(1, len(muls) // 6)][:6]
    return "builtin", muls


def library_ranks() -> dict:
    """Distribution of R (extra terms of the cheapest exact form), rank(E) and non-zero rows/columns."""
    per_format: dict[str, list[dict]] = {}
    for mul in library():
        if mul.is_exact:
            continue
        err = mul.error_table
        forms = prepare(mul).forms
        per_format.setdefault(mul.fmt.name, []).append({
            "name": mul.name, "rank": int(np.linalg.matrix_rank(err.astype(np.float64))),
            "nonzero_rows": int(np.count_nonzero(np.any(err != 0, axis=1))),
            "nonzero_cols": int(np.count_nonzero(np.any(err != 0, axis=0))),
            "R_cheapest": max(int(min(f.rank for f in forms)) - 1, 0),
        })
    summary = {}
    for fmt, entries in per_format.items():
        rs = [e["R_cheapest"] for e in entries]
        summary[fmt] = {"entries": len(entries), "R_min": min(rs), "R_median": float(np.median(rs)),
                        "R_max": max(rs), "rank_median": float(np.median([e["rank"] for e in entries])),
                        "detail": entries}
    return summary


def get_table(fmt: OperandFormat, kind: str, entry: str | None, quick: bool) -> AppMul:
    if kind == "random":
        return AppMul(f"{fmt.name}_random", fmt, random_table(fmt, 0))
    if kind == "structured":
        return AppMul(f"{fmt.name}_trunc", fmt, truncation(fmt, (fmt.a_bits + fmt.w_bits) // 2))
    return next(m for m in library_entries(fmt, quick)[1] if m.name == entry)


# ----------------------------------------------------------------------------- inputs and ops
def make_inputs(layer: dict, fmt: OperandFormat, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform activation codes; weight codes a rounded Gaussian (std = 1/3 of the range), as trained."""
    gen = torch.Generator().manual_seed(0)
    a_lo, a_hi = fmt.a_range
    w_lo, w_hi = fmt.w_range
    if layer["kind"] == "conv":
        xs = (layer["n"], layer["cin"], layer["hw"], layer["hw"])
        ws = (layer["cout"], layer["cin"], layer["k"], layer["k"])
    else:
        xs, ws = (layer["n"], layer["cin"]), (layer["cout"], layer["cin"])
    x = torch.randint(a_lo, a_hi + 1, xs, generator=gen).float()
    w = (torch.randn(ws, generator=gen) * max(w_hi, 1) / 3).round().clamp(w_lo, w_hi)
    return x.to(device), w.to(device)


def exact_op(layer: dict, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if layer["kind"] == "conv":
        return F.conv2d(x, w, padding=layer["pad"])
    return F.linear(x, w)


def weight_plan(layer: dict, w: torch.Tensor, prepared):
    """The weight side, planned once per weight (what `ApproxEmulator` caches between calls)."""
    if layer["kind"] == "conv":
        return plan_conv2d_weight(w, prepared)
    return plan_linear_weight(w, prepared)


def approx_op(layer: dict, x: torch.Tensor, w: torch.Tensor, prepared, plan=None) -> torch.Tensor:
    if layer["kind"] == "conv":
        return approx_conv2d(x, w, prepared, 1, layer["pad"], plan=plan)
    return approx_linear(x, w, prepared, plan=plan)


def gather_op(layer: dict, x: torch.Tensor, w: torch.Tensor, mul: AppMul) -> torch.Tensor:
    """Brute force: unfold the codes, look every product up in the table, sum (chunked per out channel)."""
    table = torch.as_tensor(np.array(mul.table), dtype=torch.float64, device=x.device).flatten()
    ncols = mul.fmt.shape[1]
    a_lo, w_lo = mul.fmt.a_range[0], mul.fmt.w_range[0]
    if layer["kind"] == "conv":
        cols = F.unfold(x, layer["k"], padding=layer["pad"]).long() - a_lo  # (n, K, L)  pads with code 0
        wk = w.reshape(w.shape[0], -1).long() - w_lo
        out = torch.empty(x.shape[0], w.shape[0], cols.shape[-1], dtype=torch.float64, device=x.device)
        base = cols * ncols
        for o in range(w.shape[0]):
            out[:, o] = table[base + wk[o][None, :, None]].sum(1)
        return out
    base = (x.long() - a_lo) * ncols
    wk = w.long() - w_lo
    return torch.stack([table[base + wk[o][None]].sum(1) for o in range(w.shape[0])], 1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


WALL: dict[int, float] = {}  # id(fn) -> wall seconds of its last `timed` run (reported beside the timer)
TIMER = {"clock": time.perf_counter}


def timed(fn, device: str) -> float:
    """Seconds of one run by the chosen clock (`TIMER`); the wall time is kept in `WALL` as well."""
    sync(device)
    w0, t0 = time.perf_counter(), TIMER["clock"]()
    fn()
    sync(device)
    t1, w1 = TIMER["clock"](), time.perf_counter()
    WALL[id(fn)] = w1 - w0
    return t1 - t0


# ----------------------------------------------------------------------------- memory probe
def _hwm_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def probe(spec: dict) -> dict:
    """Run one op once in this (fresh) process and report its peak working set in bytes."""
    fmt = OperandFormat.parse(spec["fmt"])
    layer, device = spec["layer"], spec["device"]
    x, w = make_inputs(layer, fmt, device)
    inputs = x.numel() * x.element_size() + w.numel() * w.element_size()
    LIBRARY["path"] = spec.get("library")
    mul = get_table(fmt, spec["kind"], spec.get("entry"), spec["quick"])
    prepared = prepare(mul)
    small = x[:1]
    if spec["variant"] == "approx":
        approx_op(layer, small, w, prepared)  # table factors to the device (not the workspace)
        clear_workspace()
    fn = {"exact": lambda: exact_op(layer, x, w), "approx": lambda: approx_op(layer, x, w, prepared),
          "gather": lambda: gather_op(layer, x, w, mul)}[spec["variant"]]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base + inputs}
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _hwm_kb()
    fn()
    return {"peak_bytes": (_hwm_kb() - base) * 1024 + inputs}


def measure_memory(spec: dict) -> int | None:
    spec = dict(spec, library=LIBRARY["path"])
    cmd = [sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--_probe", json.dumps(spec)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
        return int(json.loads(res.stdout.strip().splitlines()[-1])["peak_bytes"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        print(f"memory probe failed for {spec['fmt']} {spec['variant']}: {exc}", file=sys.stderr)
        return None


# ----------------------------------------------------------------------------- cases
def run_layer_cases(args: argparse.Namespace) -> tuple[str, list[dict]]:
    formats = ["u2xs2", "u4xs2", "u4xs4", "u8xs8"] if args.quick else [
        "u2xs2", "s2xs2", "u3xs3", "u4xs2", "u4xs4", "s4xs4", "u6xs6", "u8xs4", "u8xs8", "s8xs8"]
    if args.formats:
        formats = args.formats.split(",")
    layers = [CONV, LINEAR]
    reps = 7 if args.quick else 15
    library_kind = "synthetic"
    rows = []
    for fmt_name in formats:
        fmt = OperandFormat.parse(fmt_name)
        library_kind, lib = library_entries(fmt, args.quick)
        tables = [("random", None, get_table(fmt, "random", None, args.quick)),
                  ("structured", None, get_table(fmt, "structured", None, args.quick))]
        tables += [("library", m.name, m) for m in lib]
        for layer in layers:
            x, w = make_inputs(layer, fmt, args.device)
            gather = partial(gather_op, layer, x, w, tables[0][2])
            t_gather = statistics.median(timed(gather, args.device) for _ in range(1 if args.quick else 3))
            mem_exact = measure_memory({"fmt": fmt_name, "layer": layer, "device": args.device,
                                        "kind": "random", "variant": "exact", "quick": args.quick})
            pooled: list[float] = []  # every exact run of this (format, layer): a steadier denominator
            first_row = len(rows)
            for kind, entry, mul in tables:
                t0 = time.perf_counter()
                prepared = prepare(mul)
                t_prep = time.perf_counter() - t0
                t0 = time.perf_counter()
                plan = weight_plan(layer, w, prepared)
                t_plan = time.perf_counter() - t0
                exact = partial(exact_op, layer, x, w)
                approx = partial(approx_op, layer, x, w, prepared, plan)
                approx()  # warm-up: choice, device factors, workspace
                exact()
                te, ta, we, wa = [], [], [], []
                for _ in range(reps):
                    te.append(timed(exact, args.device))
                    we.append(WALL[id(exact)])
                    ta.append(timed(approx, args.device))
                    wa.append(WALL[id(approx)])
                choice = None if prepared.is_exact else plan.choice  # the choice the plan runs
                terms = max(choice.rank, 1) if choice and choice.form >= 0 else 1  # T == 0: no conv, R = 0
                form = prepared.forms[choice.form].name if choice and choice.form >= 0 else "exact"
                int8_matmul = plan.blocks is not None  # a linear layer on int8 digit-pair matmuls
                pairs = len(int8_pairs(prepared.forms[choice.form], choice.terms)) if int8_matmul else 0
                blocks = len(plan.blocks) if int8_matmul else 0
                conv_columns = plan.qconv.width if plan.qconv is not None else 0  # a linear one: as a 1x1 conv
                first_lib = kind != "library" or entry == tables[2][1]
                mem_approx = measure_memory({"fmt": fmt_name, "layer": layer, "device": args.device,
                                             "kind": kind, "entry": entry, "variant": "approx",
                                             "quick": args.quick}) if first_lib else None
                pooled += te
                te_m, ta_m = statistics.median(te), statistics.median(ta)
                rows.append({
                    "format": fmt_name, "layer": layer["name"], "table": kind if kind != "library" else entry,
                    "kind": kind, "form": form, "terms": terms, "R_extra": terms - 1,
                    "dtype": str(choice.dtype).replace("torch.", "") if choice else "float32",
                    "slices": choice.slices if choice else 1,
                    "int8": bool(choice and choice.int8), "int8_pairs": pairs, "int8_matmuls": blocks,
                    "int8_conv_columns": conv_columns,
                    "t_exact_ms": te_m * 1e3, "t_approx_ms": ta_m * 1e3, "t_gather_ms": t_gather * 1e3,
                    "t_prepare_ms": t_prep * 1e3, "t_weight_plan_ms": t_plan * 1e3,
                    "approx_over_exact": ta_m / te_m, "t_approx_min_ms": min(ta) * 1e3,
                    "t_exact_min_ms": min(te) * 1e3, "min_ratio": min(ta) / min(te),
                    "gather_over_approx": t_gather / ta_m,
                    "t_exact_wall_ms": statistics.median(we) * 1e3, "t_approx_wall_ms": statistics.median(wa) * 1e3,
                    "wall_ratio": statistics.median(wa) / statistics.median(we),
                    "mem_exact_mb": None if mem_exact is None else mem_exact / 2**20,
                    "mem_approx_mb": None if mem_approx is None else mem_approx / 2**20,
                    "mem_ratio": None if not (mem_exact and mem_approx) else mem_approx / mem_exact,
                })
                print(f"  {fmt_name} {layer['kind']} {rows[-1]['table']}: {form} R={terms - 1} "
                      f"x{ta_m / te_m:.2f}", file=sys.stderr)
            t_exact = statistics.median(pooled)
            for row in rows[first_row:]:
                row["t_exact_own_ms"] = row["t_exact_ms"]
                row["t_exact_ms"] = t_exact * 1e3
                row["approx_over_exact"] = row["t_approx_ms"] / row["t_exact_ms"]
    return library_kind, rows


def check_targets(rows: list[dict]) -> dict:
    """Targets (a)-(d) of the issue, per case and aggregated."""
    out: dict = {}
    out["a_time_le_2x(1+R)"] = all(r["approx_over_exact"] <= 2 * (1 + r["R_extra"]) for r in rows)
    rnd = [r for r in rows if r["kind"] == "random"]
    w_bits = {r["format"]: OperandFormat.parse(r["format"]).w_bits for r in rows}
    ratio = {id(r): r["approx_over_exact"] for r in rnd}
    out["b_random_2bit_w_le_5x"] = all(ratio[id(r)] <= 5 for r in rnd if w_bits[r["format"]] == 2)
    out["b_random_le4bit_w_le_20x"] = all(ratio[id(r)] <= 20 for r in rnd if w_bits[r["format"]] <= 4)
    med = {}
    for fmt in sorted({r["format"] for r in rows}):
        lib = [r["approx_over_exact"] for r in rows if r["kind"] == "library" and r["format"] == fmt]
        if lib:
            med[fmt] = statistics.median(lib)
    out["c_library_median"] = med
    for kind in ("conv", "linear"):  # informational: the target is on the pooled median above
        out[f"c_library_median_{kind}"] = {
            fmt: statistics.median(v) for fmt in med
            if (v := [r["approx_over_exact"] for r in rows
                      if r["kind"] == "library" and r["format"] == fmt and r["layer"].startswith(kind)])}
    widest = {f: max(OperandFormat.parse(f).a_bits, OperandFormat.parse(f).w_bits) for f in med}
    small = [v for f, v in med.items() if widest[f] <= 4]
    big = [v for f, v in med.items() if widest[f] > 4]
    out["c_library_le4x4_le_4x"] = all(v <= 4 for v in small)
    out["c_library_8x8_le_15x"] = all(v <= 15 for v in big)
    mems = [r["mem_ratio"] for r in rows if r["mem_ratio"] is not None]
    out["d_memory_le_3x"] = all(m <= 3 for m in mems) if mems else None
    out["d_memory_max_ratio"] = max(mems) if mems else None
    return out


# ----------------------------------------------------------------------------- whole model
def run_model(args: argparse.Namespace) -> list[dict]:
    """Whole reference models on the 10k Fashion-MNIST test images: exact vs emulated wall time.

    Each layer gets the middle-energy Pareto entry of the built-in library for its format.
    """
    from fames.checkpoint import load_checkpoint
    from fames.data import load_dataset
    from fames.quant.api import quant_layers

    lib = library()
    images = load_dataset("fashion-mnist").test.x[: args.images].to(args.device)
    out = []
    for name in [m for m in args.models.split(",") if m]:
        path = ROOT / "src" / "fames" / "assets" / "models" / f"{name}_mp.safetensors"
        net, _ = load_checkpoint(path)
        net.to(args.device).eval()
        assignment = {}
        for layer_name, layer in quant_layers(net):
            front = [m for m in lib.pareto(layer.operand_format) if not m.is_exact]
            assignment[layer_name] = front[len(front) // 2].name

        def evaluate(net=net) -> None:
            with torch.no_grad():
                for b in range(0, images.shape[0], args.batch):
                    net(images[b:b + args.batch])

        evaluate()
        t_exact, w_exact = [], []
        for _ in range(3):
            t_exact.append(timed(evaluate, args.device))
            w_exact.append(WALL[id(evaluate)])
        approximate_(net, assignment, lib)
        evaluate()
        t_approx, w_approx = [], []
        for _ in range(3):
            t_approx.append(timed(evaluate, args.device))
            w_approx.append(WALL[id(evaluate)])
        approximate_(net, {}, lib)
        te, ta = statistics.median(t_exact), statistics.median(t_approx)
        out.append({"model": name, "checkpoint": str(path.relative_to(ROOT)), "images": int(images.shape[0]),
                    "batch": args.batch, "assignment": assignment, "t_exact_s": te, "t_approx_s": ta,
                    "ratio": ta / te, "t_exact_wall_s": statistics.median(w_exact),
                    "t_approx_wall_s": statistics.median(w_approx),
                    "wall_ratio": statistics.median(w_approx) / statistics.median(w_exact)})
        print(f"  model {name}: exact {te:.2f}s, emulated {ta:.2f}s", file=sys.stderr)
    return out


def markdown(rows: list[dict]) -> str:
    head = ("| format | layer | table | form | R | int8 | dtype | exact ms | approx ms | gather ms "
            "| approx/exact | limit 2(1+R) | best-of ratio | wall ratio | gather/approx | mem approx/exact |")
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        mem = "" if r["mem_ratio"] is None else f"{r['mem_ratio']:.2f}"
        int8 = f"{r['int8_pairs']} pairs" if r["int8_pairs"] else (
            f"{r['int8_conv_columns']}c" if r.get("int8_conv_columns") else "")
        lines.append(f"| {r['format']} | {r['layer']} | {r['table']} | {r['form']} | {r['R_extra']} "
                     f"| {int8} | {r['dtype']} | {r['t_exact_ms']:.2f} | {r['t_approx_ms']:.2f} "
                     f"| {r['t_gather_ms']:.1f} | {r['approx_over_exact']:.2f} | {2 * (1 + r['R_extra'])} "
                     f"| {r['min_ratio']:.2f} | {r['wall_ratio']:.2f} | {r['gather_over_approx']:.1f} | {mem} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer formats, entries and repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="lenet,vgg,resnet",
                        help="reference models to emulate whole on the test images ('' to skip)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on shared cores OpenMP waits swamp timings)")
    parser.add_argument("--library", default="",
                        help="library file (default: a snapshot of the built-in library taken at start)")
    parser.add_argument("--formats", default="", help="comma-separated operand formats (default: the set)")
    parser.add_argument("--timer", choices=["auto", "thread", "wall"], default="auto",
                        help="thread: CPU time of the calling thread (auto: on CPU with --threads 1, where all "
                             "work runs on that thread; robust to other jobs on shared cores); wall: wall clock")
    parser.add_argument("--_probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.timer == "auto":
        args.timer = "thread" if args.device == "cpu" and args.threads == 1 else "wall"
    TIMER["clock"] = time.thread_time if args.timer == "thread" else time.perf_counter
    if args._probe:
        print(json.dumps(probe(json.loads(args._probe))))
        return
    from fames.multipliers.library import builtin_library_path

    source = Path(args.library) if args.library else builtin_library_path()
    snapshot = Path(tempfile.mkdtemp(prefix="fames-emulation-")) / "library.npz"
    if source.is_file():
        shutil.copyfile(source, snapshot)
        LIBRARY["path"] = str(snapshot)
    library_sha1 = hashlib.sha1(snapshot.read_bytes()).hexdigest() if source.is_file() else None
    library_kind, rows = run_layer_cases(args)
    record = {
        "benchmark": "emulation", "quick": args.quick, "device": args.device, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "load_avg": os.getloadavg(), "library": library_kind, "timer": args.timer,
        "library_file": str(source), "library_sha1": library_sha1,
        "memory_method": "fresh child process per variant; /proc/self/clear_refs=5 then VmHWM growth "
                         "during one call + input bytes (CUDA: max_memory_allocated); the approximate call "
                         "makes its weight plan inside the measured call, so the per-layer plan cache "
                         "(kept between calls like a parameter) counts towards its peak",
        "cases": rows, "targets": check_targets(rows),
    }
    record["library_ranks"] = library_ranks()
    record["models"] = run_model(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    lines = [f"Emulation benchmark ({'quick' if args.quick else 'full'}; device {args.device}, "
             f"{record['threads']} thread(s), timer {args.timer}, torch {torch.__version__}, "
             f"load average {record['load_avg'][0]:.1f})", "", markdown(rows), "",
             "targets:", "```", json.dumps(record["targets"], indent=1), "```", "",
             "| format | entries | R min | R median | R max | rank(E) median |", "|---|---|---|---|---|---|"]
    for fmt, r in record["library_ranks"].items():
        lines.append(f"| {fmt} | {r['entries']} | {r['R_min']} | {r['R_median']:g} | {r['R_max']} "
                     f"| {r['rank_median']:g} |")
    lines += ["", "| model | test images | exact s | emulated s | ratio | wall ratio |", "|---|---|---|---|---|---|"]
    for m in record["models"]:
        lines.append(f"| {m['model']} | {m['images']} | {m['t_exact_s']:.2f} | {m['t_approx_s']:.2f} "
                     f"| {m['ratio']:.2f} | {m['wall_ratio']:.2f} |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"library: {library_kind}; wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
