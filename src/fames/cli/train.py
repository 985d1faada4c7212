"""`fames train`: float training, or quantization-aware training from a float checkpoint."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from fames.errors import UsageError

log = logging.getLogger("fames")

EXAMPLES = """examples:
  fames train --model lenet --epochs 15 -o runs/lenet_float.safetensors
  fames train --from runs/lenet_float.safetensors --bits runs/lenet_bits.json --epochs 4 \\
      -o runs/lenet_mp.safetensors
  fames train --model vgg -o runs/vgg_float.safetensors --resume   # continue an interrupted run
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="train a float model or run quantization-aware training",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="built-in model: lenet, vgg, resnet (float training)")
    p.add_argument("--from", dest="init", metavar="CKPT", help="float checkpoint to start QAT from")
    p.add_argument("--bits", help="bits config for QAT: JSON file, inline JSON or 'name=bits,pattern=bits'")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default) or digits")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.05 float, 0.01 QAT)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="disable random shifts/flips")
    p.add_argument("-o", "--out", required=True, help="output checkpoint (.safetensors)")
    p.add_argument("--resume", action="store_true", help="resume from OUT.state.pt if it exists")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fames.checkpoint import load_checkpoint, save_checkpoint
    from fames.cli.args import read_bits_config
    from fames.cli.common import Progress
    from fames.data import load_dataset
    from fames.models import build_model
    from fames.quant import quantize_
    from fames.train import TrainConfig, evaluate, train

    if (args.model is None) == (args.init is None):
        raise UsageError("give either --model (float training) or --from CKPT --bits CONFIG (QAT)")
    if args.init is not None and args.bits is None:
        raise UsageError("QAT needs --bits (e.g. --bits runs/lenet_bits.json)")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    out = Path(args.out)
    state_path = out.with_name(out.name + ".state.pt")
    if state_path.exists() and not args.resume:
        raise UsageError(f"{state_path} exists from an earlier run: pass --resume to continue it, or delete it")
    dataset = load_dataset(args.dataset)
    image_size = dataset.input_shape[-1]
    if args.init is not None:
        model, header = load_checkpoint(args.init)
        if header.get("bits"):
            raise UsageError(f"{args.init} is already quantized: QAT starts from a float checkpoint")
        model_name, model_kwargs = header["model"], header.get("model_kwargs", {})
        float_accuracy = header.get("test_accuracy")
        bits = read_bits_config(args.bits)
        torch.manual_seed(args.seed)
        quantize_(model, bits, calibration=dataset.train.subset(1024, seed=args.seed).x)
        lr = 0.01 if args.lr is None else args.lr
    else:
        model_name, model_kwargs = args.model, {"image_size": image_size}
        torch.manual_seed(args.seed)
        model = build_model(model_name, **model_kwargs)
        float_accuracy = None
        lr = 0.05 if args.lr is None else args.lr
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, seed=args.seed,
                      augment=not args.no_augment)
    bar = Progress(f"train {model_name}", enabled=not args.quiet)
    started = time.perf_counter()
    history = train(model, dataset.train, dataset.val, cfg, state_path=state_path, progress=bar)
    bar.close()
    train_seconds = time.perf_counter() - started
    test_acc, test_loss = evaluate(model, dataset.test)
    val_acc, _ = evaluate(model, dataset.val)
    meta = {
        "model": model_name, "model_kwargs": model_kwargs, "dataset": args.dataset,
        "train_config": cfg.__dict__, "history": history, "val_accuracy": val_acc,
        "test_accuracy": test_acc, "test_loss": test_loss,
        "float_test_accuracy": float_accuracy if args.init else test_acc,
        "parent": str(args.init) if args.init else None,
        "train_seconds": train_seconds, "torch_threads": torch.get_num_threads(),
        "command": "fames " + shlex.join(sys.argv[1:]),
    }
    save_checkpoint(model, out, meta)
    state_path.unlink(missing_ok=True)
    log.info("%s: val %.2f %%, test %.2f %% -> %s", model_name, val_acc, test_acc, out)
    return 0
