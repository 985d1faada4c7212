"""`fames bits`: choose per-layer bit widths (Hessian-trace sensitivity + ILP) for a float checkpoint."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from fames.errors import UsageError

EXAMPLES = """examples:
  fames bits runs/lenet_float.safetensors --avg-bits 4 --fix conv1=8 -o runs/lenet_bits.json
  fames bits runs/vgg_float.safetensors --candidates 2,4,8 --bops 2e9 --json
The output file is a bits config that `fames train --from ... --bits FILE` accepts.
"""


def register(sub) -> None:
    p = sub.add_parser("bits", help="mixed-precision bit allocation (HAWQ sensitivity + ILP)", description=__doc__,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="float checkpoint")
    p.add_argument("--candidates", default="2,3,4,8", help="allowed weight bits (default 2,3,4,8)")
    p.add_argument("--avg-bits", type=float, help="max parameter-weighted average weight bits")
    p.add_argument("--size-kb", type=float, help="max weight memory in KiB")
    p.add_argument("--bops", type=float, help="max bit-operations per sample (MACs x w bits x a bits)")
    p.add_argument("--fix", default="", help="imposed bits, e.g. 'conv1=8,fc3=8'")
    p.add_argument("--min-act-bits", type=int, default=4, help="activation bits = max(weight bits, this)")
    p.add_argument("--samples", type=int, default=32, help="Hutchinson samples (default 32)")
    p.add_argument("--calibration", type=int, default=512, help="training images for the Hessian (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", help="write the bits config here (JSON)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fames.checkpoint import atomic_write, load_checkpoint
    from fames.cli.common import Progress, parse_int_list, print_json
    from fames.data import load_dataset
    from fames.quant.bitalloc import layer_infos, solve_allocation
    from fames.quant.lsq import check_bits

    candidates = parse_int_list(args.candidates, "--candidates")
    for b in candidates:
        check_bits(b, "candidate bits")
    check_bits(args.min_act_bits, "--min-act-bits")
    fixed = {}
    for item in filter(None, args.fix.split(",")):
        if "=" not in item:
            raise UsageError(f"--fix item {item!r}: expected NAME=BITS")
        name, value = item.split("=", 1)
        if not value.strip().isdigit():
            raise UsageError(f"--fix {name}: bits must be an integer 2..8, got {value!r}")
        fixed[name.strip()] = int(value)
    budgets = {k: v for k, v in (("avg_bits", args.avg_bits), ("size_kb", args.size_kb), ("bops", args.bops))
               if v is not None}
    if not budgets:
        raise UsageError("give at least one budget: --avg-bits, --size-kb or --bops (several are combined)")
    model, header = load_checkpoint(args.checkpoint)
    if header.get("bits"):
        raise UsageError(f"{args.checkpoint} is already quantized: bit allocation starts from a float checkpoint")
    data = load_dataset(header.get("dataset", "fashion-mnist")).train.subset(args.calibration, seed=args.seed)
    cands = sorted(set(candidates) | set(fixed.values()))
    bar = Progress("hessian trace", enabled=not args.quiet)
    infos = layer_infos(model, data.x, data.y, cands, samples=args.samples, seed=args.seed, progress=bar)
    bar.close()
    act = lambda b: max(b, args.min_act_bits)  # noqa: E731
    alloc = solve_allocation(infos, candidates, budgets, fixed=fixed, act_bits=act)
    result = {
        "bits": alloc.config(min_act_bits=args.min_act_bits),
        "budgets": budgets,
        "avg_weight_bits": alloc.avg_bits, "size_kb": alloc.size_kb, "bops": alloc.bops,
        "objective": alloc.objective,
        "layers": [{"name": li.name, "params": li.params, "macs": li.macs, "hessian_trace": li.trace,
                    "sensitivity": {str(b): li.sensitivity(b) for b in cands}} for li in infos],
        "checkpoint": args.checkpoint,
        "command": "fames " + shlex.join(sys.argv[1:]),
    }
    if args.out:
        atomic_write(Path(args.out), lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
    if args.json:
        print_json(result)
    else:
        print(f"average weight bits {alloc.avg_bits:.2f}, size {alloc.size_kb:.1f} KiB, {alloc.bops:.3g} BOPs")
        for li in infos:
            print(f"  {li.name:24s} w{alloc.bits[li.name]} a{act(alloc.bits[li.name])}  trace {li.trace:.3g}")
    return 0
