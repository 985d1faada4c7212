"""GPU check: emulation, counting matrices and the whole selection on CUDA must match the CPU.

Run (from the repository root, on a machine with a GPU; about a minute):

    python benchmarks/gpu_check.py [--device cuda] [--model lenet]

``--device cpu`` runs the same comparisons CPU against CPU (a dry run of the script itself).

Part 1, emulation:
For a few operand formats and table kinds (random full-rank, truncation, zero-operand product) it runs
`approx_conv2d` / `approx_linear` on CUDA and on the CPU, requires a max abs difference of 0 (TF32 is
switched off: it would round the integer operands), times exact vs approximate on CUDA, and prints
PASS/FAIL per case (timings: weight side planned once, as `ApproxEmulator` caches it).

Part 2, end to end on a reference checkpoint (model and data moved to the device):

- counting matrices (mean and per-group) and compensation statistics equal the CPU's to 1e-4 of their
  largest entry (the gradients are float32 from other kernels, and the mean-gradient matrix is a small
  residual of cancelling terms, which amplifies their last-bit differences; TF32 anywhere in the pass
  shows up as errors of 1e-2);
- the exact quantized model's per-sample correctness on the validation split matches the CPU's on all but
  0.02 % of the samples (float32 logits: a near-tie may flip);
- `fames.select` picks the same assignment, offsets and validation accuracy as on the CPU; both wall times
  are printed;
- the command line, ``fames select CKPT --device DEVICE --json``, prints that assignment too.

Exit status 1 when any case fails, 0 otherwise (SKIP when the device is cuda and there is none).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import fames
from fames.cli.main import main as cli_main
from fames.emulation import approx_conv2d, approx_linear, prepare
from fames.emulation.functional import plan_conv2d_weight
from fames.multipliers.appmul import AppMul
from fames.multipliers.formats import OperandFormat


def tables(fmt: OperandFormat) -> list[AppMul]:
    exact = fmt.exact_table()
    rng = np.random.default_rng(0)
    scale = max(1, int(np.abs(exact).max()) // 8)
    noisy = exact + rng.integers(-scale, scale + 1, size=exact.shape)
    low = exact - (exact & 3)  # drops the low two bits of every product (low rank)
    zero = exact.copy()
    zero[-fmt.a_range[0]] += 5  # 0 x v -> 5: padding semantics matter
    return [AppMul(f"{fmt.name}_random", fmt, noisy), AppMul(f"{fmt.name}_lowbits", fmt, low),
            AppMul(f"{fmt.name}_zero", fmt, zero)]


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device) -> float:
    fn()
    synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(5):
        fn()
    synchronize(dev)
    return (time.perf_counter() - t0) / 5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="lenet", help="reference model of part 2 (lenet, vgg, resnet)")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("SKIP: CUDA not available")
        return 0
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    failures = check_emulation(dev)
    try:
        failures += check_end_to_end(dev, args.model)
    except Exception:  # noqa: BLE001 -- report and count, the emulation results above still stand
        traceback.print_exc()
        print("FAIL end to end: exception")
        failures += 1
    print("ALL PASS" if failures == 0 else f"FAILED: {failures} case(s)")
    return 1 if failures else 0


def check_emulation(dev: torch.device) -> int:
    """Part 1: approximate conv/linear on `dev` equal the CPU's exactly; prints timings."""
    failures = 0
    gen = torch.Generator().manual_seed(0)
    for name in ("u2xs2", "s4xs4", "u4xs2", "u8xs8", "s8xs8"):
        fmt = OperandFormat.parse(name)
        (a_lo, a_hi), (w_lo, w_hi) = fmt.a_range, fmt.w_range
        x = torch.randint(a_lo, a_hi + 1, (64, 32, 14, 14), generator=gen).float()
        w = (torch.randn(32, 16, 3, 3, generator=gen) * w_hi / 3).round().clamp(w_lo, w_hi)
        xl = torch.randint(a_lo, a_hi + 1, (64, 400), generator=gen).float()
        wl = (torch.randn(100, 400, generator=gen) * w_hi / 3).round().clamp(w_lo, w_hi)
        for mul in tables(fmt):
            prepared = prepare(mul)
            for pad_taps in (True, False):
                cpu = approx_conv2d(x, w, prepared, 2, 1, 1, 2, pad_taps)
                gpu = approx_conv2d(x.to(dev), w.to(dev), prepared, 2, 1, 1, 2, pad_taps)
                diff = (gpu.cpu().double() - cpu.double()).abs().max().item()
                ok = diff == 0
                failures += not ok
                print(f"{'PASS' if ok else 'FAIL'} conv {mul.name} pad_taps={pad_taps}: max|diff|={diff:g}")
            cpu = approx_linear(xl, wl, prepared)
            gpu = approx_linear(xl.to(dev), wl.to(dev), prepared)
            diff = (gpu.cpu().double() - cpu.double()).abs().max().item()
            failures += diff != 0
            print(f"{'PASS' if diff == 0 else 'FAIL'} linear {mul.name}: max|diff|={diff:g}")
            xd, wd = x.to(dev), w.to(dev)
            t_exact = timed(lambda xd=xd, wd=wd: F.conv2d(xd, wd, None, 2, 1, 1, 2), dev)
            plan = plan_conv2d_weight(wd, prepared, 2)  # weight side once, as ApproxEmulator caches it
            t_approx = timed(lambda xd=xd, wd=wd, p=prepared, pl=plan:
                             approx_conv2d(xd, wd, p, 2, 1, 1, 2, plan=pl), dev)
            print(f"     time conv {mul.name}: exact {t_exact * 1e3:.3f} ms, approx {t_approx * 1e3:.3f} ms, "
                  f"ratio {t_approx / t_exact:.1f}")
    return failures


def check_end_to_end(dev: torch.device, model_name: str) -> int:
    """Part 2: counting, evaluation and `fames.select` on `dev` against the CPU."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import DEFAULT_CHECKPOINT_DIR, load_reference

    from fames.emulation.api import approximate_
    from fames.multipliers.library import builtin_library
    from fames.selection.evaluate import evaluate_model
    from fames.sensitivity import counting_matrices

    path = DEFAULT_CHECKPOINT_DIR / f"{model_name}_mp.safetensors"
    library = builtin_library()
    cpu = load_reference(model_name, path)
    gpu = load_reference(model_name, path, device=str(dev))
    approximate_(cpu.model, {}, library)
    approximate_(gpu.model, {}, library)
    failures = 0

    def report(ok: bool, what: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {what}")

    cal_cpu, cal_gpu = (cpu.calibration.x, cpu.calibration.y), (gpu.calibration.x, gpu.calibration.y)
    counts_cpu = counting_matrices(cpu.model, cal_cpu, groups=32)
    counts_gpu = counting_matrices(gpu.model, cal_gpu, groups=32)
    for layer, lc in counts_cpu.layers.items():
        other = counts_gpu.layers[layer]
        pairs = [("total", lc.total, other.total), ("groups", lc.groups, other.groups)]
        if lc.channel is not None and other.channel is not None:
            pairs += [("channel grads", lc.channel.grads, other.channel.grads),
                      ("taps", lc.channel.taps, other.channel.taps)]
        for what, a, b in pairs:
            err = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
            report(err <= 1e-4, f"counting {layer} {what}: max rel diff {err:.2e}")

    val_cpu, val_gpu = cpu.data.val, gpu.data.val
    c_cpu = evaluate_model(cpu.model, val_cpu.x, val_cpu.y).correct
    c_gpu = evaluate_model(gpu.model, val_gpu.x, val_gpu.y).correct
    flips = int((c_cpu != c_gpu).sum())
    report(flips <= max(1, len(c_cpu) // 5000), f"exact model correctness: {flips} of {len(c_cpu)} differ")

    times, sels = {}, {}
    for label, ref in (("cpu", cpu), (str(dev), gpu)):
        model = copy.deepcopy(ref.model)
        synchronize(dev)
        t0 = time.perf_counter()
        sels[label] = fames.select(model, library, (ref.calibration.x, ref.calibration.y),
                                   (ref.data.val.x, ref.data.val.y), max_accuracy_drop=1.0)
        synchronize(dev)
        times[label] = time.perf_counter() - t0
    a, b = sels["cpu"], sels[str(dev)]
    report(a.assignment == b.assignment,
           f"select assignment equal ({a.reduction_pct:.2f} % vs {b.reduction_pct:.2f} %)")
    report(a.offsets == b.offsets, "select offsets equal")
    report(abs(a.accuracy - b.accuracy) <= 0.02 + 1e-9,
           f"select validation accuracy {a.accuracy:.2f} vs {b.accuracy:.2f}")
    print(f"     time select {model_name}: cpu {times['cpu']:.1f} s, {dev} {times[str(dev)]:.1f} s "
          f"(stages on {dev}: {', '.join(f'{k} {v:.2f}' for k, v in b.timings.items())})")

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["--quiet", "select", str(path), "--device", str(dev), "--json"])
    summary = json.loads(out.getvalue()) if code == 0 else {}
    report(code == 0 and summary.get("assignment") == a.assignment,
           f"`fames select --device {dev}`: exit {code}, the CPU selection's assignment")
    return failures


if __name__ == "__main__":
    sys.exit(main())
