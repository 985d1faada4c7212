"""`fames eval`: accuracy and loss of a checkpoint on the validation or test split."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  fames eval src/fames/assets/models/lenet_mp.safetensors --split test
  fames eval runs/vgg_float.safetensors --split val --json
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint", description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fames.checkpoint import load_checkpoint
    from fames.cli.common import print_json
    from fames.data import load_dataset
    from fames.train import evaluate

    model, header = load_checkpoint(args.checkpoint)
    dataset = load_dataset(header.get("dataset", "fashion-mnist"))
    accuracy, loss = evaluate(model, dataset.split(args.split))
    result = {"checkpoint": args.checkpoint, "model": header["model"], "split": args.split,
              "accuracy": accuracy, "loss": loss, "bits": header.get("bits", {})}
    if args.json:
        print_json(result)
    else:
        bits = ", ".join(f"{k}:{v['w']}/{v['a']}" for k, v in result["bits"].items()) or "float"
        print(f"{header['model']} on {args.split}: accuracy {accuracy:.2f} %, loss {loss:.4f}  [w/a bits: {bits}]")
    return 0
