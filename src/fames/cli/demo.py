"""`fames demo`: the shipped reference model, the built-in library and Fashion-MNIST, end to end.

Writes the full report folder (as `fames run`) and prints the energy reduction, the accuracy before and
after and the selection time. The output folder is never overwritten: when it exists, a timestamp
suffix is added (unless --out names it explicitly; then --force is needed).
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

from fames.errors import UsageError

EXAMPLES = """examples:
  fames demo
  fames demo --out my-demo --max-accuracy-drop 0.5
  fames demo --json -q
"""

DEFAULT_OUT = "fames-demo"


def reference_checkpoint() -> Path:
    """The shipped mixed-precision LeNet checkpoint."""
    return Path(str(resources.files("fames").joinpath("assets", "models", "lenet_mp.safetensors")))


def register(sub) -> None:
    from fames.cli.run import add_selection_args

    p = sub.add_parser("demo", help="end-to-end demo on the shipped reference model (< 3 minutes)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", metavar="DIR",
                   help=f"output folder (default {DEFAULT_OUT}/, timestamped if it exists)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    add_selection_args(p)
    p.set_defaults(handler=run)


def default_out_dir(base: str = DEFAULT_OUT) -> Path:
    """`base`, or `base-YYYYmmdd-HHMMSS[-k]` when it exists."""
    out = Path(base)
    if not out.exists():
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, k = Path(f"{base}-{stamp}"), 1
    while out.exists():
        out, k = Path(f"{base}-{stamp}-{k}"), k + 1
    return out


def run(args: argparse.Namespace) -> int:
    from fames.checkpoint import load_checkpoint
    from fames.cli.run import execute, load_data, print_result
    from fames.pipeline import sha256_file
    from fames.report import check_out_dir, write_report

    started = time.perf_counter()
    out = check_out_dir(args.out, args.force) if args.out else default_out_dir()
    ckpt = Path(args.checkpoint) if args.checkpoint else reference_checkpoint()
    if not ckpt.is_file():
        raise UsageError(f"the reference checkpoint {ckpt} is missing from this installation")
    model, meta = load_checkpoint(ckpt)
    if not meta.get("bits"):
        raise UsageError(f"{ckpt} is not quantized")
    args.dataset = meta.get("dataset", "fashion-mnist")
    dataset, data_info = load_data(args, None)
    inputs = {"checkpoint": str(ckpt), "checkpoint_sha256": sha256_file(ckpt), **data_info}
    result = execute(args, model, meta, dataset, inputs, {})
    write_report(result, out, force=args.force)
    print_result(result, out, args.json, "fames demo")
    if not args.json:
        print(f"done in {time.perf_counter() - started:.0f} s")
    return 0
