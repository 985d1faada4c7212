"""How well the estimates rank multi-layer assignments: the thousands that a long NSGA-II run measured.

Run (from the repository root, after journaled GA runs of ``paper_table.py --ga-journal``; about a minute
per model on one core):

    .venv/bin/python benchmarks/journal_ranking.py [--quick] [--journals J1.jsonl J2.jsonl] [--groups G]
        [--results DIR]

Default journals: ``benchmarks/results/ga_journal/ga_journal_vgg.jsonl`` and
``benchmarks/results/ga_journal_resnet/ga_journal_resnet.jsonl`` (the model is named by the file).
``--quick``: the first 500 assignments of the first journal. Writes ``journal_ranking.json`` and
``journal_ranking.md`` and prints the table.

Why: the selection ILP ranks whole assignments by the sum of per-layer estimates, and `fidelity.py` checks
that sum on only 10-30 random assignments. A GA journal holds every assignment NSGA-II measured (plain
multipliers, validation accuracy), most of them near the budget, where the ranking decides what the budget
search tries. For each estimator this benchmark counts the calibration set as `fames.select` does and gives
the Spearman correlation between the measured validation drop and:

- *sum*: the sum over layers of the layer's estimate (negative ones clipped at 0), as the ILP sees it;
- *joint* (``abs`` and ``curvature`` only): the estimator applied to the per-group terms summed over
  layers first, ``mean_g sqrt(m_g)|sum_l T_{g,l}|`` and ``0.5 mean_g (sum_l T_{g,l})^2``, which lets the
  layers' errors cancel or add as they do in the network.

``--groups`` sets the micro-batch groups of the counting pass (default: `fames.select`'s 32). The joint
predictors need per-group terms of every layer, and their cross-layer products are estimated from the groups:
``--groups 1024`` (one sample per group at the 1,024 calibration images) is the per-sample version.
``benchmarks/results/journal_ranking_groups/g32/`` and ``.../g1024/`` hold both (``--groups 32`` and
``--groups 1024 --results benchmarks/results/journal_ranking_groups/g1024``); they and the record at the top
level, the one `fidelity.py` scores (the default command, so the same as ``g32``), are on the whole
journals of the thirteenth sitting of issue 5 (4,212 VGG and 13,173 ResNet assignments).

Bands of measured validation drop: all assignments, at most 3 points, and 0.3 to 2 points (around a 1-point
budget).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    DEFAULT_CHECKPOINT_DIR,
    RESULTS,
    ROOT,
    SELECT_GROUPS,
    checkpoint_paths,
    environment,
    load_reference,
    markdown_table,
    open_library,
    write_outputs,
)
from scipy.stats import spearmanr

from fames.selection.api import COUNTING_DTYPE
from fames.selection.evaluate import EVALUATION_BATCH
from fames.selection.genetic import read_journal
from fames.sensitivity.counting import counting_matrices
from fames.sensitivity.estimators import DEFAULT_ESTIMATOR, ESTIMATORS, estimate_layer

DEFAULT_JOURNALS = (RESULTS / "ga_journal" / "ga_journal_vgg.jsonl",
                    RESULTS / "ga_journal_resnet" / "ga_journal_resnet.jsonl")
NEAR_BUDGET = "0.3 <= drop <= 2"  # the band `fidelity.py` scores estimators on
BANDS = {"all": (-np.inf, np.inf), "drop <= 3": (-np.inf, 3.0), NEAR_BUDGET: (0.3, 2.0)}
JOINT = ("abs", "curvature")
QUICK_ROWS = 500


def measured_assignments(path: Path, limit: int | None) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Header, distinct choices ``(A, L)`` (first measurement kept) and their validation drops in points."""
    try:
        header, rows, _ = read_journal(path)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    exact = [r["error"] for r in rows if not any(r["choice"])]
    if not exact:
        raise SystemExit(f"{path}: the journal holds no all-exact evaluation to measure drops against")
    first: dict[tuple[int, ...], float] = {}
    for row in rows[:limit]:
        first.setdefault(tuple(row["choice"]), row["error"])
    choices = np.array(list(first), dtype=np.int64)
    return header, choices, 100.0 * (np.array(list(first.values())) - min(exact))


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y)[0])


RANKING_CALIBRATION = 1024  # as fidelity.py's, whose score this record feeds


def rank_journal(path: Path, library, args: argparse.Namespace) -> dict[str, Any]:
    model_name = path.stem.removeprefix("ga_journal_")
    found = checkpoint_paths([model_name], args.checkpoint_dir)
    if model_name not in found:
        raise SystemExit(f"{path}: needs {args.checkpoint_dir / (model_name + '_mp.safetensors')}")
    header, choices, drops = measured_assignments(path, QUICK_ROWS if args.quick else None)
    ref = load_reference(model_name, found[model_name], RANKING_CALIBRATION)
    start = time.perf_counter()
    counts = counting_matrices(ref.model, (ref.calibration.x, ref.calibration.y), groups=args.groups,
                               batch_size=args.batch_size, dtype=COUNTING_DTYPE)
    n = counts.n_samples
    sums = {est: np.zeros(len(choices)) for est in ESTIMATORS}
    group_sum = np.zeros((len(choices), len(next(iter(counts.layers.values())).group_sizes)))
    for i, (layer, names) in enumerate(zip(header["layers"], header["options"], strict=True)):
        lc, muls = counts.layers[layer], [library.get(name) for name in names]
        for est in ESTIMATORS:
            values = estimate_layer(lc, muls, est)
            sums[est] += np.array([max(values[name], 0.0) for name in names])[choices[:, i]]
        errors = np.stack([m.error_table.astype(np.float64) for m in muls])
        group_sum += np.einsum("gab,mab->mg", lc.groups, errors)[choices[:, i]]
    sizes = next(iter(counts.layers.values())).group_sizes.astype(np.float64)
    predictors = {f"sum of {est}": v for est, v in sums.items()}
    predictors["joint abs"] = (np.sqrt(sizes)[None, :] * np.abs(group_sum)).sum(axis=1) / n
    predictors["joint curvature"] = 0.5 * (group_sum**2).sum(axis=1) / n
    bands = {}
    for band, (lo, hi) in BANDS.items():
        keep = (drops >= lo) & (drops <= hi)
        bands[band] = {"n": int(keep.sum()),
                       "spearman": {name: spearman(v[keep], drops[keep]) for name, v in predictors.items()}}
    resolved = path.resolve()
    return {"model": model_name,
            "journal": str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved),
            "assignments": len(choices), "groups": args.groups, "calibration": n, "bands": bands,
            "seconds": time.perf_counter() - start}


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    names = list(next(iter(rows[0]["bands"].values()))["spearman"])
    cells = [[r["model"], band, b["n"], *[b["spearman"][name] for name in names]]
             for r in rows for band, b in r["bands"].items()]
    headers = ["model", "measured drop (pt)", "n",
               *[name + (" (default)" if name == f"sum of {DEFAULT_ESTIMATOR}" else "") for name in names]]
    return ("## Ranking of the GA journals' measured assignments (Spearman against the validation drop)\n\n"
            "Every distinct assignment a long NSGA-II run measured (plain multipliers); *sum of X*: X per layer "
            "summed over layers (what the selection ILP bounds); *joint*: per-group terms summed over layers "
            "before the estimator. Counting pass: " + ", ".join(
                f"{r['model']} {r['groups']} groups over {r['calibration']} images" for r in rows)
            + ".\n\n" + markdown_table(headers, cells))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"first {QUICK_ROWS} assignments of the first journal")
    p.add_argument("--journals", type=Path, nargs="+", default=list(DEFAULT_JOURNALS))
    p.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR)
    p.add_argument("--library", default=None, help="library file (default: the built-in one)")
    p.add_argument("--batch-size", type=int, default=EVALUATION_BATCH)
    p.add_argument("--groups", type=int, default=SELECT_GROUPS,
                   help=f"micro-batch groups of the counting pass (default {SELECT_GROUPS}, as fames.select)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.groups < 1:
        p.error(f"--groups must be >= 1, got {args.groups}")
    journals = args.journals[:1] if args.quick else args.journals
    missing = [str(j) for j in journals if not j.is_file()]
    if missing:
        raise SystemExit(f"no such journal: {', '.join(missing)} (make one with paper_table.py --ga-journal DIR)")
    torch.set_num_threads(args.threads)
    library, label = open_library(args.library)
    rows = [rank_journal(j, library, args) for j in journals]
    record = {"benchmark": "journal_ranking", "quick": args.quick, "library": label, "models": rows,
              "environment": environment(args.threads)}
    write_outputs("journal_ranking", record, markdown(rows), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
