"""What FAMES' selection costs against what it finds: the default search and cheaper ones (fewer validation
passes, fewer calibration images), each judged against the long NSGA-II runs of issue 5's speed point.

Run (from the repository root; each configuration is one ``paper_table.py --no-ga`` run on one core,
5 s to 2 min; a configuration whose record exists is reused, so an interrupted run resumes where it was):

    .venv/bin/python benchmarks/search_cost.py [--quick] [--models lenet,vgg,resnet] [--passes 6,8,16] \
        [--calibration-sizes 1024,512] [--results benchmarks/results/search_cost] [--rerun]

``--quick``: LeNet at 8 passes and 512 images. Writes ``search_cost.json`` and ``search_cost.md`` in the
results folder (and one ``paper_table`` record per configuration, ``<model>_e<passes>_c<images>/``) and
prints the table. The committed record is the default command.

The GA side is not rerun (hours per model): it comes from the committed long runs, LeNet
``ga_long_lenet/``, VGG ``ga_journal/``, ResNet ``ga_journal_resnet/`` (their ``paper_table.json``). So the
wall-time ratios compare runs made at different times on this kind of machine, each with the other core
busy; the ratio in evaluations (the GA's evaluations against FAMES' cost in validation passes, counting
converted at this run's seconds per pass) does not depend on the machine's load.

Issue 5's speed point asks for both: FAMES >= 300x faster than the GA, and FAMES' reduction no worse than
the GA's best feasible one minus 1 point. "GA s to best" is when the GA first reached its final best (its
last improvement); "GA s to FAMES-1" when its best feasible reduction first came within 1 point of this
configuration's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _common import REFERENCE_MODELS, RESULTS, ROOT, environment, markdown_table, parse_models, write_outputs
from paper_table import seconds_to_best, seconds_to_reach

GA_RECORDS = {"lenet": RESULTS / "ga_long_lenet" / "paper_table.json",
              "vgg": RESULTS / "ga_journal" / "paper_table.json",
              "resnet": RESULTS / "ga_journal_resnet" / "paper_table.json"}
TARGET_SPEEDUP = 300.0


def parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{what}: expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"--{what}: expected positive whole numbers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="LeNet only, 8 passes, 512 calibration images")
    p.add_argument("--models", default=",".join(REFERENCE_MODELS))
    p.add_argument("--passes", default="6,8,16", help="budget-search evaluation budgets, in validation passes")
    p.add_argument("--calibration-sizes", default="1024,512", help="calibration images of the counting pass")
    p.add_argument("--results", type=Path, default=RESULTS / "search_cost")
    p.add_argument("--rerun", action="store_true", help="measure again even where a record exists")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.passes, args.calibration_sizes = "lenet", "8", "512"
    args.model_list = parse_models(args.models)
    args.pass_list = parse_ints(args.passes, "passes")
    args.calibration_list = parse_ints(args.calibration_sizes, "calibration-sizes")
    unknown = [m for m in args.model_list if m not in GA_RECORDS]
    if unknown:
        raise SystemExit(f"--models: no long GA run for {', '.join(unknown)} (choose from {', '.join(GA_RECORDS)})")
    missing = [str(GA_RECORDS[m]) for m in args.model_list if not GA_RECORDS[m].is_file()]
    if missing:
        raise SystemExit(f"missing GA record(s): {', '.join(missing)} (see benchmarks/paper_table.py's docstring)")
    return args


def run_configuration(model: str, passes: int, images: int, folder: Path, rerun: bool) -> dict[str, Any]:
    """The `paper_table.py --no-ga` record of one configuration, measured unless it exists."""
    record = folder / "paper_table.json"
    if rerun or not record.is_file():
        cmd = [sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), "--threads", "1", "--no-ga",
               "--models", model, "--max-evaluations", str(passes), "--calibration", str(images),
               "--results", str(folder)]
        print(f"{model}: {passes} passes, {images} calibration images ...", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(record.read_text())["models"][model]


def evaluations_at(history: Sequence[Mapping[str, Any]], seconds: float | None) -> int | None:
    """Evaluations the GA had made by the generation that ended at `seconds`."""
    if seconds is None:
        return None
    return next(int(h["evaluations"]) for h in history if float(h["seconds"]) >= seconds)


def judge(model: str, passes: int, images: int, fames: Mapping[str, Any], ga: Mapping[str, Any]) -> dict[str, Any]:
    stages = fames["fames_stage_seconds"]
    seconds = float(fames["fames_seconds"])
    per_pass = stages["evaluation"] / fames["fames_evaluation_passes"]
    history = ga["ga_history"]
    to_best, to_match = seconds_to_best(history), seconds_to_reach(history, fames["energy_reduction"] - 1.0)
    pass_equivalents = seconds / per_pass
    energy_ok = fames["energy_reduction"] >= ga["ga_energy_reduction"] - 1.0
    speedup_best = to_best / seconds if to_best else None
    return {
        "model": model, "passes": passes, "calibration_images": images,
        "energy_reduction": fames["energy_reduction"], "test_drop": fames["accuracy_drop"],
        "validation_upper_bound": fames["validation_drop"]["upper_pts"] if fames["validation_drop"] else None,
        "fames_seconds": seconds, "counting_seconds": stages["counting"],
        "evaluation_passes": fames["fames_evaluation_passes"], "seconds_per_pass": per_pass,
        "fames_pass_equivalents": pass_equivalents,
        "ga_energy_reduction": ga["ga_energy_reduction"], "ga_test_drop": ga.get("ga_accuracy_drop"),
        "ga_seconds_to_best": to_best, "ga_evaluations_to_best": evaluations_at(history, to_best),
        "ga_seconds_to_match": to_match, "ga_evaluations_to_match": evaluations_at(history, to_match),
        "speedup_to_best": speedup_best,
        "speedup_to_match": to_match / seconds if to_match else None,
        "evaluation_ratio_to_best": (evaluations_at(history, to_best) / pass_equivalents) if to_best else None,
        "energy_point": energy_ok,
        "speed_point": bool(energy_ok and speedup_best is not None and speedup_best >= TARGET_SPEEDUP),
    }


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    table = markdown_table(
        ["model", "passes", "cal. images", "FAMES red. %", "test drop", "FAMES s", "counting s", "s/pass",
         "GA best %", "GA s to best", "speedup to best", "GA s to FAMES-1", "speedup to FAMES-1",
         "GA evals to best / FAMES passes", "energy point", "speed point"],
        [[r["model"], r["passes"], r["calibration_images"], r["energy_reduction"], r["test_drop"],
          r["fames_seconds"], r["counting_seconds"], r["seconds_per_pass"], r["ga_energy_reduction"],
          r["ga_seconds_to_best"], r["speedup_to_best"], r["ga_seconds_to_match"] or "never",
          r["speedup_to_match"] or "-", r["evaluation_ratio_to_best"], "yes" if r["energy_point"] else "no",
          "yes" if r["speed_point"] else "no"] for r in rows])
    return ("## FAMES' search cost against the long NSGA-II runs (1.0-point budget)\n\n"
            "FAMES: `fames.select` at the given evaluation budget (validation passes) and calibration images; "
            "reductions of multiplier energy in %, test drops in points, times in s. GA: the committed long "
            "NSGA-II runs (best feasible by its own rule, validation drop <= budget). Energy point: FAMES >= GA "
            f"best - 1. Speed point: that, and GA s to best >= {TARGET_SPEEDUP:.0f}x FAMES s.\n\n" + table)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.model_list:
        ga = json.loads(GA_RECORDS[model].read_text())["models"][model]
        for passes in args.pass_list:
            for images in args.calibration_list:
                folder = args.results / f"{model}_e{passes}_c{images}"
                fames = run_configuration(model, passes, images, folder, args.rerun)
                rows.append(judge(model, passes, images, fames, ga))
    record = {"benchmark": "search_cost", "quick": args.quick, "target_speedup": TARGET_SPEEDUP,
              "ga_records": {m: str(GA_RECORDS[m].relative_to(ROOT)) for m in args.model_list},
              "rows": rows, "environment": environment(1)}
    write_outputs("search_cost", record, markdown(rows), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
