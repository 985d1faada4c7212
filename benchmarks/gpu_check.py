"""GPU check of the emulation: approximate conv/linear on CUDA must equal the CPU result exactly.

Run (from the repository root, on a machine with a GPU; takes well under a minute):

    python benchmarks/gpu_check.py

For a few operand formats and table kinds (random full-rank, truncation, zero-operand product) it runs
`approx_conv2d` / `approx_linear` on CUDA and on the CPU, requires a max abs difference of 0 (TF32 is
switched off: it would round the integer operands), times exact vs approximate on CUDA, and prints
PASS/FAIL per case (timings: weight side planned once, as `ApproxEmulator` caches it). Exit status 1
when any case fails, 0 otherwise (SKIP without a GPU).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

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


def timed(fn) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / 5


def main() -> int:
    if not torch.cuda.is_available():
        print("SKIP: CUDA not available")
        return 0
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
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
            t_exact = timed(lambda xd=xd, wd=wd: F.conv2d(xd, wd, None, 2, 1, 1, 2))
            plan = plan_conv2d_weight(wd, prepared, 2)  # weight side once, as ApproxEmulator caches it
            t_approx = timed(lambda xd=xd, wd=wd, p=prepared, pl=plan:
                             approx_conv2d(xd, wd, p, 2, 1, 1, 2, plan=pl))
            print(f"     time conv {mul.name}: exact {t_exact * 1e3:.3f} ms, approx {t_approx * 1e3:.3f} ms, "
                  f"ratio {t_approx / t_exact:.1f}")
    print("ALL PASS" if failures == 0 else f"FAILED: {failures} case(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
