"""The genetic baseline judged by FAMES' own acceptance rule, from the journal of a long NSGA-II run.

Run (from the repository root, after journaled GA runs of ``paper_table.py --ga-journal``; a few minutes
per model on one core):

    .venv/bin/python benchmarks/ga_same_rule.py [--journals J1.jsonl J2.jsonl] [--max-checks 60] \
        [--curse 20] [--fames-record benchmarks/results/paper_table.json] [--results DIR]

Default journals: ``benchmarks/results/ga_journal/ga_journal_vgg.jsonl``,
``benchmarks/results/ga_journal_resnet/ga_journal_resnet.jsonl`` and
``benchmarks/results/ga_journal_lenet/ga_journal_lenet.jsonl`` (the model is named by the file; the FAMES
figures come from ``--fames-record``, by default the main ``benchmarks/results/paper_table.json``).
Writes ``benchmarks/results/ga_same_rule.json`` and
``ga_same_rule.md`` and prints the table.

Why: NSGA-II (as ALWANN) calls an assignment feasible when its measured validation drop is within the budget,
a point estimate; `fames.select` accepts one only when the upper `default_confidence` bound (80 % at the
default 8 passes) of its paired drop is. Every assignment that FAMES' rule accepts is feasible for the GA
(the bound is above the drop), so walking the GA's feasible assignments from the largest saving down and
re-measuring each (per image, on the same validation split; the journal's error rate is checked against
the re-measurement) until one passes finds the best assignment the GA evaluated that FAMES' rule would
accept, and when the GA first evaluated it. Both answers' test drops are measured too (the test split
judges; it steers nothing). The GA is still run under its own rule: steered by the stricter one it might
have done better, so the same-rule figure is what this run found, not what such a GA would find.

A third reading, generous to the GA: the best of its own-rule feasible assignments whose *test* drop is
below the budget (the walk goes on, measuring test drops, until it finds one). The test split picks it, so
no user could have chosen it that way; it bounds what the GA's run held that truly keeps the budget. Over
thousands of evaluations a point-estimate rule keeps the candidates whose validation drop came out lucky
(the winner's curse), so the own-rule best can break the budget on test.

The winner's curse, measured (``--curse K``, default 20; 0 skips it): the test drops of the K own-rule
feasible assignments with the largest savings (the GA's answer and its runners-up), against those of K
others drawn at random (seeded) from the own-rule feasible assignments whose validation drop lies in the
same range as the top K's. Both groups passed the same validation rule at the same drops; if the top
ones came out lucky on validation, their test drops exceed their validation drops by more than the random
group's do. Reported per group: mean validation drop, mean test drop, and the mean gap (test minus
validation) with its standard error; and the difference of the gaps. The groups differ in saving too (the
top ones are the largest), so a difference also admits that assignments saving more generalise worse at
the same validation drop; the split offers no third sample to tell the two apart.

The run's course judged on test (``--no-trajectory`` skips it): every evaluation that raised the GA's
own-rule best (its convergence curve), with that assignment's test drop, and the best of those whose test
drop keeps the budget, as it stood after each evaluation. Where the second curve stops rising while the
first still climbs, the GA's later gains are the validation split's luck rather than better assignments.
The figure ``ga_trajectory_<model>.png`` (in ``--results``) shows both curves with FAMES' reduction.

How FAMES' estimates see the GA's answers (``--no-risk`` skips it): each answer's *sum of curvature* (the
per-layer estimates summed, what the selection ILP bounds; plain multipliers, as the GA ran them, from a
counting pass as `fames.select` makes it) against its *joint curvature* (`journal_ranking.py`: the
per-group first-order terms summed over layers before squaring, so that errors of different layers can
cancel), with the mean ratio joint / sum of both winner's-curse groups for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
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

from fames.emulation.api import approximate_
from fames.selection.api import COUNTING_BATCH, COUNTING_DTYPE
from fames.selection.budget import DEFAULT_MAX_EVALUATIONS, default_confidence, paired_drop
from fames.selection.evaluate import evaluate_model
from fames.selection.genetic import read_journal
from fames.sensitivity.counting import counting_matrices
from fames.sensitivity.estimators import estimate_layer

DEFAULT_JOURNALS = (RESULTS / "ga_journal" / "ga_journal_vgg.jsonl",
                    RESULTS / "ga_journal_resnet" / "ga_journal_resnet.jsonl",
                    RESULTS / "ga_journal_lenet" / "ga_journal_lenet.jsonl")


def journal_rows(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Header and evaluations of a GA journal; each evaluation gets ``elapsed``, the GA's clock when it
    finished."""
    try:
        header, rows, _ = read_journal(path)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    clock, timed = 0.0, []
    for row in rows:
        clock += row["seconds"]
        timed.append({**row, "elapsed": clock})
    return header, timed


def correctness(ref, library, assignment: Mapping[str, str], split: str, batch_size: int) -> np.ndarray:
    """Per-image correctness of `assignment` (plain multipliers, as the GA's) on a split; model left exact."""
    data = ref.data.split(split)
    approximate_(ref.model, assignment, library)
    try:
        return evaluate_model(ref.model, data.x, data.y, batch_size).correct
    finally:
        approximate_(ref.model, {}, library)


def judge(path: Path, library, args: argparse.Namespace) -> dict[str, Any]:
    model_name = path.stem.removeprefix("ga_journal_")
    header, rows = journal_rows(path)
    layers, options, budget = header["layers"], header["options"], float(header["budget_pts"])
    confidence = default_confidence(DEFAULT_MAX_EVALUATIONS)
    found = checkpoint_paths([model_name], args.checkpoint_dir)
    record_path = args.fames_record
    if model_name not in found or not record_path.is_file():
        raise SystemExit(f"{path}: needs {args.checkpoint_dir / (model_name + '_mp.safetensors')} and the "
                         f"paper_table record {record_path} (--fames-record)")
    ref = load_reference(model_name, found[model_name])

    def assignment(choice: Sequence[int]) -> dict[str, str]:
        return {layer: options[i][c] for i, (layer, c) in enumerate(zip(layers, choice, strict=True))}

    base_val = correctness(ref, library, {}, "val", args.batch_size)
    base_test = correctness(ref, library, {}, "test", args.batch_size)
    base_err = 1.0 - float(base_val.mean())
    first: dict[tuple[int, ...], dict[str, Any]] = {}
    for i, row in enumerate(rows):
        first.setdefault(tuple(row["choice"]), {**row, "index": i + 1})
    feasible = sorted((r for r in first.values() if 100.0 * (r["error"] - base_err) <= budget + 1e-9),
                      key=lambda r: r["energy"])
    if not feasible:
        raise SystemExit(f"{path}: no feasible assignment in the journal")

    def judged(row: dict[str, Any], val: np.ndarray) -> dict[str, Any]:
        bound = paired_drop(base_val, val, budget, confidence)
        return {"reduction": 100.0 * (1.0 - row["energy"]), "evaluation": row["index"],
                "ga_seconds": row["elapsed"], "validation_drop": bound.drop_pts, "upper_bound": bound.upper_pts,
                "accepted_by_fames_rule": bound.upper_pts <= budget, "assignment": assignment(row["choice"])}

    test_drops: dict[tuple[str, ...], float] = {}

    def with_test_drop(info: dict[str, Any]) -> dict[str, Any]:
        """`info` with its test drop (each assignment measured once)."""
        if "test_drop" not in info:
            key = tuple(info["assignment"].values())
            if key not in test_drops:
                test = correctness(ref, library, info["assignment"], "test", args.batch_size)
                test_drops[key] = 100.0 * float(base_test.mean() - test.mean())
            info["test_drop"] = test_drops[key]
        return info

    checked, ga_best, same_rule, on_test, mismatches = 0, None, None, None, 0
    for row in feasible[: args.max_checks]:
        val = correctness(ref, library, assignment(row["choice"]), "val", args.batch_size)
        checked += 1
        mismatches += abs((1.0 - float(val.mean())) - row["error"]) > 1e-9
        info = judged(row, val)
        if ga_best is None:
            ga_best = with_test_drop(info)
        if same_rule is None and info["accepted_by_fames_rule"]:
            same_rule = with_test_drop(info)
        if on_test is None and with_test_drop(info)["test_drop"] < budget:
            on_test = info
        print(f"{model_name}: {info['reduction']:.2f} % drop {info['validation_drop']:.2f} upper "
              f"{info['upper_bound']:.2f} -> {'accept' if info['accepted_by_fames_rule'] else 'reject'}"
              + (f", test drop {info['test_drop']:.2f}" if "test_drop" in info else ""), flush=True)
        if same_rule is not None and on_test is not None:
            break
    trajectory = own_rule_bests(rows, base_err, budget, lambda row: with_test_drop(
        {"assignment": assignment(row["choice"])})["test_drop"]) if args.trajectory else None
    curse, curse_assignments = winners_curse(feasible, base_err, budget, args.curse, lambda row: with_test_drop(
        {"assignment": assignment(row["choice"])})["test_drop"], assignment) if args.curse else (None, {})
    if args.risk:
        risk = risk_model(ref, library, args.batch_size)
        for info in {id(x): x for x in (ga_best, same_rule, on_test) if x is not None}.values():
            info.update(risk(info["assignment"]))
        if curse:
            for name in ("top", "random"):
                ratios = [r["joint_curvature"] / r["sum_curvature"] for r in map(risk, curse_assignments[name])]
                curse[name]["joint_over_sum_mean"] = float(np.mean(ratios))
    fames = json.loads(record_path.read_text())["models"][model_name]
    resolved = path.resolve()
    return {"model": model_name,
            "journal": str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved),
            "ga_evaluations": len(rows), "ga_seconds": rows[-1]["elapsed"], "confidence": confidence,
            "budget": budget, "checked": checked, "error_mismatches": int(mismatches),
            "ga_best_own_rule": ga_best, "ga_best_fames_rule": same_rule, "ga_best_within_budget_on_test": on_test,
            "fames_reduction": fames["energy_reduction"], "fames_seconds": fames["fames_seconds"],
            "fames_test_drop": fames["accuracy_drop"], "winners_curse": curse, "trajectory": trajectory}


def risk_model(ref, library, batch_size: int) -> Callable[[Mapping[str, str]], dict[str, float]]:
    """``assignment -> {"sum_curvature", "joint_curvature"}`` from one counting pass as `fames.select` makes
    it (its calibration images and groups), plain multipliers."""
    counts = counting_matrices(ref.model, (ref.calibration.x, ref.calibration.y), groups=SELECT_GROUPS,
                               batch_size=min(batch_size, COUNTING_BATCH), dtype=COUNTING_DTYPE)

    def risk(assignment: Mapping[str, str]) -> dict[str, float]:
        total, joint = 0.0, 0.0
        for layer, name in assignment.items():
            lc, mul = counts.layers[layer], library.get(name)
            total += max(estimate_layer(lc, [mul], "curvature")[name], 0.0)
            joint = joint + np.einsum("gab,ab->g", lc.groups, mul.error_table.astype(np.float64))
        return {"sum_curvature": total, "joint_curvature": 0.5 * float(np.sum(np.square(joint))) / counts.n_samples}

    return risk


def own_rule_bests(rows: Sequence[dict[str, Any]], base_err: float, budget: float,
                   test_drop: Callable[[dict[str, Any]], float]) -> list[dict[str, Any]]:
    """Each evaluation (in journal order) that lowered the energy of the GA's own-rule best, with the new
    best's validation and test drops and ``best_within_budget_on_test``: the largest reduction among the
    bests so far whose test drop is below the budget (None before the first)."""
    out: list[dict[str, Any]] = []
    best_energy, on_test = np.inf, None
    for i, row in enumerate(rows):
        drop = 100.0 * (row["error"] - base_err)
        if drop > budget + 1e-9 or row["energy"] >= best_energy - 1e-12:
            continue
        best_energy = row["energy"]
        reduction, test = 100.0 * (1.0 - row["energy"]), test_drop(row)
        if test < budget:
            on_test = reduction
        out.append({"evaluation": i + 1, "ga_seconds": row["elapsed"], "reduction": reduction,
                    "validation_drop": drop, "test_drop": test, "best_within_budget_on_test": on_test})
    return out


def trajectory_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown section: per model, where the own-rule best and its test-kept counterpart last rose."""
    lines = []
    for r in rows:
        t = r.get("trajectory")
        if not t:
            continue
        last = t[-1]
        kept = [x for x in t if x["test_drop"] < r["budget"]]
        broke = sum(x["test_drop"] >= r["budget"] for x in t)
        lines.append([r["model"], len(t), last["evaluation"], last["reduction"], last["test_drop"],
                      kept[-1]["evaluation"] if kept else "-", kept[-1]["reduction"] if kept else "none",
                      kept[-1]["test_drop"] if kept else "-", f"{broke}/{len(t)}", r["fames_reduction"]])
    if not lines:
        return ""
    return ("\n\n### The run's course judged on test\n\nEvery evaluation that raised the GA's own-rule best, "
            "with that assignment's test drop (`trajectory` in the JSON record): the last such rise, and the last "
            "one whose assignment keeps the budget on test (the best the run held, so far as the test split can "
            "tell); broke: own-rule bests whose test drop is at or above the budget.\n\n" + markdown_table(
                ["model", "own-rule bests", "last at evaluation", "reduction %", "test drop",
                 "last kept on test at evaluation", "reduction %", "test drop", "broke", "FAMES %"], lines))


def plot_trajectory(row: dict[str, Any], path: Path) -> None:
    """The GA's own-rule best and its best kept on test, against evaluations, with FAMES' reduction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, total = row["trajectory"], row["ga_evaluations"]
    evals = [x["evaluation"] for x in t] + [total]
    own = [x["reduction"] for x in t]
    kept = [x["best_within_budget_on_test"] for x in t]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(evals, own + own[-1:], where="post", color="C0", lw=2.5,
            label="NSGA-II best (validation drop within budget)")
    ax.step(evals, [np.nan if k is None else k for k in kept + kept[-1:]], where="post", color="C2", ls="--",
            lw=1.5, label="the same, kept only while its test drop is within budget")
    broke = [x for x in t if x["test_drop"] >= row["budget"]]
    ax.scatter([x["evaluation"] for x in broke], [x["reduction"] for x in broke], marker="x", color="k",
               zorder=3, label="bests whose test drop breaks the budget")
    ax.axhline(row["fames_reduction"], color="C3", ls="--", lw=1, label="FAMES")
    ax.set_xscale("log")
    ax.set_xlabel("GA evaluations")
    ax.set_ylabel("multiplier-energy reduction (%)")
    ax.set_title(f"{row['model']}: NSGA-II's course at a {row['budget']:g}-point budget")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def winners_curse(feasible: Sequence[dict[str, Any]], base_err: float, budget: float, k: int,
                  test_drop: Callable[[dict[str, Any]], float], assignment: Callable[[Sequence[int]], dict[str, str]]
                  ) -> tuple[dict[str, Any] | None, dict[str, list[dict[str, str]]]]:
    """Validation and test drops of the `k` own-rule feasible assignments with the largest savings
    (`feasible` sorted by energy, lowest first) against `k` drawn at random from the rest whose validation
    drop lies in the top ones' range (None when fewer than `k` such others exist), and the groups'
    assignments (``"top"``, ``"random"``)."""
    top = list(feasible[:k])
    drops = [100.0 * (r["error"] - base_err) for r in top]
    lo, hi = min(drops), max(drops)
    pool = [r for r in feasible[k:] if lo <= 100.0 * (r["error"] - base_err) <= hi]
    if len(top) < k or len(pool) < k:
        return None, {}
    chosen: dict[str, list[dict[str, str]]] = {}
    picks = np.random.default_rng(0).choice(len(pool), size=k, replace=False)
    groups = {}
    for name, rows in (("top", top), ("random", [pool[i] for i in sorted(picks)])):
        val = np.array([100.0 * (r["error"] - base_err) for r in rows])
        test = np.array([test_drop(r) for r in rows])
        gap = test - val
        chosen[name] = [assignment(r["choice"]) for r in rows]
        groups[name] = {"n": k, "reduction_mean": float(np.mean([100.0 * (1.0 - r["energy"]) for r in rows])),
                        "validation_drop_mean": float(val.mean()), "test_drop_mean": float(test.mean()),
                        "gap_mean": float(gap.mean()), "gap_se": float(gap.std(ddof=1) / np.sqrt(k)),
                        "test_over_budget": int((test >= budget).sum())}
    diff = groups["top"]["gap_mean"] - groups["random"]["gap_mean"]
    se = float(np.hypot(groups["top"]["gap_se"], groups["random"]["gap_se"]))
    return {"validation_drop_range": [lo, hi], "budget": budget, "pool": len(pool), **groups, "gap_difference": diff,
            "gap_difference_se": se}, chosen


def curse_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown section of the winner's-curse measurement ('' when no model has one)."""
    def group(g: dict[str, Any]) -> list[Any]:
        return [g["reduction_mean"], g["validation_drop_mean"], g["test_drop_mean"],
                f"{g['gap_mean']:+.3f} ± {g['gap_se']:.3f}", f"{g['test_over_budget']}/{g['n']}"]

    lines = []
    for r in rows:
        if c := r.get("winners_curse"):
            lo, hi = c["validation_drop_range"]
            lines.append([r["model"], c["top"]["n"], f"{lo:.2f}-{hi:.2f}", *group(c["top"]), *group(c["random"]),
                          f"{c['gap_difference']:+.3f} ± {c['gap_difference_se']:.3f}"])
    if not lines:
        return ""
    return ("\n\n### The winner's curse\n\nThe GA's top own-rule feasible assignments by saving against as many "
            "others drawn at random from its own-rule feasible assignments in the same range of validation drop; "
            "gap: test drop minus validation drop (mean ± standard error); test >= 1: assignments whose test drop "
            "breaks the budget.\n\n" + markdown_table(
                ["model", "n", "val drop range", "top: mean %", "val drop", "test drop", "gap", "test >= 1",
                 "random: mean %", "val drop", "test drop", "gap", "test >= 1", "gap difference"], lines))


def risk_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown section of the GA answers' sum and joint curvature ('' when not measured)."""
    readings = (("own rule", "ga_best_own_rule"), ("FAMES' rule", "ga_best_fames_rule"),
                ("within budget on test", "ga_best_within_budget_on_test"))
    lines = []
    for r in rows:
        curse = r.get("winners_curse") or {}
        groups = [f"{curse[g]['joint_over_sum_mean']:.2f}" if "joint_over_sum_mean" in curse.get(g, {}) else "-"
                  for g in ("top", "random")]
        for label, key in readings:
            info = r.get(key) or {}
            if "sum_curvature" in info:
                lines.append([r["model"], label, info["reduction"], info["sum_curvature"], info["joint_curvature"],
                              info["joint_curvature"] / info["sum_curvature"], *groups])
    if not lines:
        return ""
    return ("\n\n### The GA's answers as FAMES' estimates see them\n\nCurvature estimates of the plain "
            "assignments (counting pass as `fames.select`'s): the sum over layers (what the selection ILP bounds) "
            "and the joint estimate (per-group terms summed over layers before squaring: errors of different "
            "layers may cancel); last columns: the mean joint / sum of the winner's-curse groups.\n\n"
            + markdown_table(["model", "GA reading", "reduction %", "sum of curvature", "joint curvature",
                              "joint / sum", "top group joint / sum", "random group joint / sum"], lines))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--journals", type=Path, nargs="+", default=list(DEFAULT_JOURNALS))
    p.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR)
    p.add_argument("--library", default=None, help="library file (default: the built-in one)")
    p.add_argument("--max-checks", type=int, default=60, help="feasible assignments re-measured at most")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--fames-record", type=Path, default=RESULTS / "paper_table.json",
                   help="paper_table record whose FAMES figures are shown beside the GA's")
    p.add_argument("--curse", type=int, default=20,
                   help="assignments per group of the winner's-curse measurement (0: skip it)")
    p.add_argument("--no-risk", dest="risk", action="store_false",
                   help="skip FAMES' sum and joint curvature of the GA's answers")
    p.add_argument("--no-trajectory", dest="trajectory", action="store_false",
                   help="skip the test drops of the GA's successive own-rule bests")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    missing = [str(j) for j in args.journals if not j.is_file()]
    if missing:
        raise SystemExit(f"no such journal: {', '.join(missing)} (make one with paper_table.py --ga-journal DIR)")
    library, label = open_library(args.library)
    start = time.perf_counter()
    rows = [judge(j, library, args) for j in args.journals]
    record = {"benchmark": "ga_same_rule", "library": label, "models": rows,
              "seconds": time.perf_counter() - start, "environment": environment(1)}

    def cells(r: dict[str, Any]) -> list[Any]:
        own, same = r["ga_best_own_rule"], r["ga_best_fames_rule"] or {}
        on_test = r.get("ga_best_within_budget_on_test") or {}
        return [r["model"], r["ga_evaluations"], r["ga_seconds"], own["reduction"], own["validation_drop"],
                own["upper_bound"], own["test_drop"], own["ga_seconds"], same.get("reduction", "none found"),
                same.get("test_drop", "-"), same.get("ga_seconds", "-"), on_test.get("reduction", "none found"),
                on_test.get("test_drop", "-"), r["fames_reduction"], r["fames_test_drop"], r["fames_seconds"]]

    table = markdown_table(
        ["model", "GA evals", "GA s", "GA best (own rule) %", "val drop", "upper bound", "test drop",
         "found at GA s", "GA best (FAMES' rule) %", "test drop", "found at GA s",
         "GA best within budget on test %", "test drop", "FAMES %", "FAMES test drop", "FAMES s"],
        [cells(r) for r in rows])
    md = ("## NSGA-II judged by FAMES' acceptance rule\n\n"
          f"Own rule: measured validation drop <= budget. FAMES' rule: upper {rows[0]['confidence']:.0%} bound of "
          "the paired validation drop <= budget. Within budget on test: the best of the GA's own-rule feasible "
          "assignments whose test drop is below the budget (an oracle reading, generous to the GA: the test split "
          "picks it). Drops in points, times on the GA's journaled clock.\n\n" + table)
    md += trajectory_table(rows) + curse_table(rows) + risk_table(rows)
    for r in rows:
        if r.get("trajectory"):
            plot_trajectory(r, args.results / f"ga_trajectory_{r['model']}.png")
    write_outputs("ga_same_rule", record, md, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
