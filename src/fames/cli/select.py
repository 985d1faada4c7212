"""`fames select`: choose a multiplier per layer of a quantized checkpoint and print the selection.

Calibration = a seeded subset of the training split; the budget search measures on the validation
split; the test accuracy is reported after the choice (the test split never steers it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fames.errors import UsageError

EXAMPLES = """examples:
  fames select runs/lenet_mp.safetensors
  fames select runs/lenet_mp.safetensors --library mylib.npz --max-accuracy-drop 0.5 --json
  fames select runs/vgg_mp.safetensors --estimator fisher --calibration 2048 -o vgg_assignment.json
  fames select runs/lenet_mp.safetensors --assignment mine.json   # evaluate a given assignment
  fames select runs/vgg_mp.safetensors --device cuda               # selection and evaluations on a GPU
For the full report folder (plots, Verilog) use `fames run --checkpoint CKPT --out DIR`.
"""


def register(sub) -> None:
    from fames.cli.run import add_selection_args

    p = sub.add_parser("select", help="choose multipliers for a quantized checkpoint", description=__doc__,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="quantized fames checkpoint (.safetensors)")
    add_selection_args(p)
    p.add_argument("--dataset", help="built-in dataset (default: the checkpoint's)")
    p.add_argument("--assignment", metavar="FILE",
                   help="evaluate this {layer: multiplier} JSON, no selection (with the compensation "
                        "offsets of FILE.offsets.json when that file exists)")
    p.add_argument("-o", "--out", metavar="FILE",
                   help="also write the assignment here (JSON; its compensation offsets go to "
                        "FILE.offsets.json, with .json replaced)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fames.checkpoint import atomic_write, load_checkpoint
    from fames.cli.run import execute, load_data, print_result
    from fames.emulation.api import offsets_path, save_assignment, save_offsets
    from fames.pipeline import sha256_file

    if args.calibration < 1:
        raise UsageError(f"--calibration must be >= 1, got {args.calibration}")
    model, meta = load_checkpoint(args.checkpoint)
    if not meta.get("bits"):
        raise UsageError(f"{args.checkpoint} is a float checkpoint: quantize it first "
                         "(fames train --from ... --bits ..., or fames run --checkpoint ... --bits ...)")
    dataset, data_info = load_data(args, meta.get("dataset"))
    inputs = {"checkpoint": args.checkpoint, "checkpoint_sha256": sha256_file(args.checkpoint), **data_info}
    result = execute(args, model, meta, dataset, inputs, {}, loss_points=0)
    if args.out:
        atomic_write(Path(args.out), lambda tmp: save_assignment(result.assignment, tmp))
        if result.offsets:
            atomic_write(offsets_path(args.out), lambda tmp: save_offsets(result.offsets, tmp))
    print_result(result, None, args.json, "fames select")
    if not args.json:
        print(f"  {result.explanation}")
    return 0
