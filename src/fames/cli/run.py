"""`fames run`: one command from a model to a report folder (selection, test accuracy, plots, Verilog).

The model is a fames checkpoint (--checkpoint) or your own PyTorch model (--model file.py:ClassName with
--weights). A float model is quantized with --bits or --auto-bits, then its LSQ steps are calibrated on a
seeded batch of training images (post-training), or trained for --qat-epochs epochs (QAT).
The selection uses a calibration subset of the training split and the validation split; the test split
is only used to report the result. Exit codes: 0 success, 1 failure, 2 bad usage or input files.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from fames.errors import UsageError

log = logging.getLogger("fames")

EXAMPLES = """examples:
  fames run --checkpoint runs/lenet_mp.safetensors --out runs/lenet_report
  fames run --model my_net.py:Net --weights my_net.pt --dataset digits --bits 'conv*=4,fc=8' --out out/
  fames run --model my_net.py:make_net --weights w.safetensors --data my_data.npz \\
      --auto-bits --avg-bits 4 --qat-epochs 2 --max-accuracy-drop 0.5 --out out/ --force
  fames run --checkpoint ckpt.safetensors --assignment out/assignment.json --out check/   # no selection

--data FILE.npz needs arrays x_train, y_train, x_test, y_test; images N x H x W or N x C x H x W,
uint8 (divided by 255) or float (used as is); validation = 10 % of the training arrays (seeded).
"""

CANDIDATE_BITS = (2, 3, 4, 8)


def budget_arg(text: str) -> float:
    """argparse type of --max-accuracy-drop: a number of points in [0, 100]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of points, got {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100 points, got {text}")
    return value


def passes_arg(text: str) -> int:
    """argparse type of --passes: a whole number of validation passes, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of validation passes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 validation pass, got {text}")
    return value


def add_selection_args(p: argparse.ArgumentParser) -> None:
    """Options shared by `fames run`, `fames select` and `fames demo`."""
    from fames.selection.api import DEFAULT_CALIBRATION
    from fames.selection.budget import BISECTIONS, DEFAULT_BISECTION, DEFAULT_MAX_EVALUATIONS
    from fames.sensitivity.estimators import DEFAULT_ESTIMATOR, ESTIMATORS

    p.add_argument("--library", metavar="FILE", help="multiplier library (.npz; default: the built-in one)")
    p.add_argument("--max-accuracy-drop", type=budget_arg, default=1.0, metavar="POINTS",
                   help="accuracy budget in top-1 points, 0..100 (default 1.0)")
    p.add_argument("--estimator", default=DEFAULT_ESTIMATOR, choices=sorted(ESTIMATORS),
                   help=f"loss-change estimator (default {DEFAULT_ESTIMATOR})")
    p.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION, metavar="N",
                   help=f"calibration images from the training split (default {DEFAULT_CALIBRATION})")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset and bootstrap")
    p.add_argument("--passes", type=passes_arg, default=DEFAULT_MAX_EVALUATIONS, metavar="N",
                   help="budget search's measured evaluations at most, in validation passes "
                        f"(default {DEFAULT_MAX_EVALUATIONS}; more passes also widen the accepted drop's confidence)")
    p.add_argument("--bisection", default=DEFAULT_BISECTION, choices=BISECTIONS,
                   help=f"which bracket point the budget search measures next (default {DEFAULT_BISECTION})")
    p.add_argument("--no-compensation", action="store_true",
                   help="do not remove each multiplier's mean error with per-channel accumulator offsets")
    p.add_argument("--no-anchors", action="store_true",
                   help="do not correct the estimates' scale per layer with one measured substitution each")
    p.add_argument("--device", default="cpu",
                   help="torch device of the selection and evaluations: cpu, cuda, cuda:1, mps (default cpu)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub) -> None:
    p = sub.add_parser("run", help="model -> selection -> report folder (summary, plots, Verilog)",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("model")
    src.add_argument("--checkpoint", metavar="CKPT", help="a fames checkpoint (.safetensors)")
    src.add_argument("--model", metavar="FILE.py:NAME", help="your model class or factory function")
    src.add_argument("--weights", metavar="FILE", help="float state_dict for --model (.pt/.pth/.safetensors)")
    q = p.add_argument_group("quantization (float models)")
    q.add_argument("--bits", help="bits config: JSON file, inline JSON or 'name=bits,pattern=bits'")
    q.add_argument("--auto-bits", action="store_true", help="choose bits (Hessian sensitivity + ILP)")
    q.add_argument("--avg-bits", type=float, help="average weight bits for --auto-bits (e.g. 4)")
    q.add_argument("--qat-epochs", type=int, default=0, metavar="N",
                   help="quantization-aware training epochs (default 0: post-training calibration)")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", help="built-in dataset: fashion-mnist or digits (default: the checkpoint's)")
    d.add_argument("--data", metavar="FILE.npz", help="your arrays x_train, y_train, x_test, y_test")
    add_selection_args(p)
    p.add_argument("--assignment", metavar="FILE",
                   help="evaluate this {layer: multiplier} JSON, no selection (with the compensation "
                        "offsets of FILE.offsets.json when that file exists)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(handler=run)


def load_data(args: argparse.Namespace, default: str | None) -> tuple[Any, dict[str, str]]:
    """The dataset of --data / --dataset (else `default`) and its provenance entries."""
    from fames.data import load_dataset
    from fames.data.user import load_npz_dataset
    from fames.pipeline import sha256_dataset, sha256_file

    if getattr(args, "data", None) and getattr(args, "dataset", None):
        raise UsageError("give either --dataset or --data, not both")
    if getattr(args, "data", None):
        ds = load_npz_dataset(args.data, seed=args.seed)
        return ds, {"data": args.data, "data_sha256": sha256_file(args.data)}
    name = getattr(args, "dataset", None) or default or "fashion-mnist"
    try:
        ds = load_dataset(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return ds, {"data": name, "data_sha256": sha256_dataset(ds)}


def quantize_float(model, args: argparse.Namespace, dataset, quiet: bool) -> dict[str, float]:
    """Quantize a float model per --bits/--auto-bits, calibrate its steps, optionally QAT. Returns times."""
    from fames.cli.args import read_bits_config
    from fames.cli.common import Progress
    from fames.quant import quantize_
    from fames.train import TrainConfig, train

    times: dict[str, float] = {}
    cal = dataset.train.subset(args.calibration, seed=args.seed)
    if args.auto_bits:
        from fames.quant.bitalloc import layer_infos, solve_allocation

        t = time.perf_counter()
        bar = Progress("bit allocation", enabled=not quiet)
        sub = dataset.train.subset(min(args.calibration, 512), seed=args.seed)
        infos = layer_infos(model, sub.x, sub.y, CANDIDATE_BITS, samples=8, seed=args.seed, progress=bar)
        bar.close()
        try:
            bits = solve_allocation(infos, CANDIDATE_BITS, {"avg_bits": args.avg_bits},
                                    act_bits=lambda b: max(b, 4)).config(min_act_bits=4)
        except ValueError as exc:
            raise UsageError(f"--auto-bits: {exc}") from None
        times["bit_allocation"] = time.perf_counter() - t
    else:
        bits = read_bits_config(args.bits)
    t = time.perf_counter()
    try:
        quantize_(model, bits, calibration=cal.x)
    except ValueError as exc:
        raise UsageError(f"bits config: {exc}") from None
    times["quantization"] = time.perf_counter() - t
    if args.qat_epochs > 0:
        t = time.perf_counter()
        bar = Progress("QAT", enabled=not quiet)
        train(model, dataset.train, dataset.val,
              TrainConfig(epochs=args.qat_epochs, lr=0.01, seed=args.seed, augment=False), progress=bar)
        bar.close()
        model.eval()
        times["qat"] = time.perf_counter() - t
    return times


def load_model(args: argparse.Namespace, quiet: bool) -> tuple[Any, dict, Any, dict, dict]:
    """Model (quantized, trained), meta, dataset, provenance and stage times from the run arguments."""
    from fames.checkpoint import load_checkpoint
    from fames.pipeline import sha256_file
    from fames.quant.api import quant_layers
    from fames.train import evaluate

    t0 = time.perf_counter()
    if (args.checkpoint is None) == (args.model is None):
        raise UsageError("give either --checkpoint CKPT or --model FILE.py:NAME (with --weights)")
    if args.model is None and args.weights:
        raise UsageError("--weights goes with --model; a checkpoint holds its own weights")
    if args.auto_bits and args.bits:
        raise UsageError("give either --bits or --auto-bits, not both")
    if args.auto_bits and args.avg_bits is None:
        raise UsageError("--auto-bits needs --avg-bits (e.g. --avg-bits 4)")
    if args.qat_epochs < 0:
        raise UsageError(f"--qat-epochs must be >= 0, got {args.qat_epochs}")
    inputs: dict[str, Any] = {}
    if args.checkpoint is not None:
        model, meta = load_checkpoint(args.checkpoint)
        inputs.update(checkpoint=args.checkpoint, checkpoint_sha256=sha256_file(args.checkpoint))
    else:
        from fames.models.user import load_user_model, parse_model_spec

        model = load_user_model(args.model, args.weights)
        meta = {"model": args.model}
        inputs.update(model_file=str(parse_model_spec(args.model)[0]),
                      model_file_sha256=sha256_file(parse_model_spec(args.model)[0]))
        if args.weights:
            inputs.update(weights=args.weights, weights_sha256=sha256_file(args.weights))
    dataset, data_info = load_data(args, meta.get("dataset"))
    inputs.update(data_info)
    times = {"load": time.perf_counter() - t0}
    quantized = bool(list(quant_layers(model)))
    if quantized and (args.bits or args.auto_bits or args.qat_epochs):
        raise UsageError("the model is already quantized: --bits, --auto-bits, --qat-epochs are for float "
                         "models")
    if not quantized:
        if not (args.bits or args.auto_bits):
            raise UsageError("the model is in float: give --bits CONFIG or --auto-bits --avg-bits X")
        meta = dict(meta)
        meta["float_test_accuracy"] = _checked_accuracy(evaluate, model, dataset)
        times.update(quantize_float(model, args, dataset, quiet))
    return model, dict(meta), dataset, inputs, times


def _checked_accuracy(evaluate, model, dataset) -> float:
    """Float test accuracy; a model that does not accept the data's images is a usage error."""
    try:
        return evaluate(model, dataset.test)[0]
    except (RuntimeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"the model cannot run on {dataset.name} images of shape "
                         f"{tuple(dataset.test.x.shape[1:])} ({first})") from None


def read_assignment(path: str | None) -> dict[str, str] | None:
    """The --assignment file, or None."""
    if path is None:
        return None
    from fames.emulation.api import load_assignment

    if not Path(path).is_file():
        raise UsageError(f"assignment file {path} not found")
    try:
        return load_assignment(path)
    except ValueError as exc:  # JSONDecodeError included
        raise UsageError(f"assignment file {path}: {' '.join(str(exc).split())}") from None


def read_offsets(path: str | None) -> dict[str, list[float]] | None:
    """The compensation offsets saved beside the --assignment file (``x.json`` -> ``x.offsets.json``)."""
    if path is None:
        return None
    from fames.emulation.api import load_offsets, offsets_path

    file = offsets_path(path)
    if not file.is_file():
        return None
    try:
        return load_offsets(file)
    except ValueError as exc:
        raise UsageError(f"offsets file {file}: {' '.join(str(exc).split())}") from None


def load_library_and_assignment(args: argparse.Namespace) -> tuple[Any, dict, dict[str, str] | None, float]:
    """The --library (or built-in) library, its provenance, the --assignment map and the load time.

    Called before the model is loaded, so that a bad file fails in a second.
    """
    from fames.pipeline import library_source

    t = time.perf_counter()
    library, lib_info = library_source(args.library)
    assignment = read_assignment(getattr(args, "assignment", None))
    for layer, name in (assignment or {}).items():
        if name not in library:
            try:
                library.get(name)
            except ValueError as exc:
                raise UsageError(f"assignment file {args.assignment}: layer {layer!r}: {exc}") from None
    return library, lib_info, assignment, time.perf_counter() - t


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """`fames.select` keywords of --passes, --bisection and --no-anchors (those the command has)."""
    options = {"max_evaluations": getattr(args, "passes", None), "bisection": getattr(args, "bisection", None),
               "anchor": None if getattr(args, "no_anchors", None) is None else not args.no_anchors}
    return {k: v for k, v in options.items() if v is not None}


def execute(args: argparse.Namespace, model, meta: dict, dataset, inputs: dict, times: dict,
            loss_points: int = 6, preloaded: tuple | None = None):
    """Run the shared pipeline with a stage progress bar (library loaded here unless `preloaded`)."""
    from fames.cli.common import Progress
    from fames.pipeline import run_pipeline

    library, lib_info, assignment, seconds = preloaded or load_library_and_assignment(args)
    lib_info = dict(lib_info)
    times = {**times, "library": seconds}
    hashes = {k[: -len("_sha256")]: inputs.pop(k) for k in list(inputs) if k.endswith("_sha256")}
    hashes["library"] = lib_info.pop("library_sha256")
    inputs = {**inputs, **lib_info, "hashes": hashes}
    bar = Progress("select -> test -> check", enabled=not getattr(args, "quiet", False))
    try:
        result = run_pipeline(model, meta, dataset, library, args.max_accuracy_drop, estimator=args.estimator,
                              calibration=args.calibration, seed=args.seed, assignment=assignment,
                              loss_points=loss_points, timings=times, inputs=inputs, progress=bar,
                              compensate=not getattr(args, "no_compensation", False),
                              offsets=read_offsets(getattr(args, "assignment", None)),
                              device=getattr(args, "device", None), select_kwargs=search_options(args))
    except ValueError as exc:
        if "no characterised multiplier" in str(exc) or "no exact multiplier" in str(exc):
            raise UsageError(f"library {inputs['library']}: {exc}") from None
        raise
    finally:
        bar.close()
    return result


def print_result(result, out: Path | None, as_json: bool, title: str = "fames") -> None:
    """The short table (or the summary as JSON) on stdout."""
    from fames.cli.common import print_json

    if as_json:
        data = result.summary()
        if out is not None:
            data["report"] = str(out)
        print_json(data)
        return
    fl = "n/a" if result.accuracy_float is None else f"{result.accuracy_float:.2f} %"
    print(f"{title}: {result.inputs.get('model')} on {result.config['dataset']}, "
          f"budget {result.config['max_accuracy_drop']} pt")
    print(f"  energy reduction (multipliers)   {result.energy.reduction_pct:6.2f} %")
    print(f"  energy reduction (MACs)          {result.energy.mac_reduction_pct:6.2f} %")
    print(f"  test accuracy float              {fl}")
    print(f"  test accuracy before -> after    {result.accuracy_quantized:.2f} % -> "
          f"{result.accuracy_approximate:.2f} % (drop {result.accuracy_drop:.2f} pt)")
    print(f"  selection time                   {result.selection_seconds:6.1f} s")
    for row in result.layers:
        mark = "  + mean-error offsets" if row.get("compensated") else ""
        print(f"    {row['name']:20s} {row['format']:8s} {row['multiplier']}{mark}")
    if out is not None:
        print(f"report: {out / 'report.html'}")


def run(args: argparse.Namespace) -> int:
    from fames.report import check_out_dir, write_report

    out = check_out_dir(args.out, args.force)
    if args.calibration < 1:
        raise UsageError(f"--calibration must be >= 1, got {args.calibration}")
    preloaded = load_library_and_assignment(args)
    model, meta, dataset, inputs, times = load_model(args, args.quiet)
    result = execute(args, model, meta, dataset, inputs, times, preloaded=preloaded)
    write_report(result, out, force=args.force)
    print_result(result, out, args.json, "fames run")
    return 0
