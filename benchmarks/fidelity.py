"""Fidelity and additivity of the loss-change estimators (issue 5, item 3).

Run (from the repository root):

    .venv/bin/python benchmarks/fidelity.py [--quick] [--models lenet,vgg,resnet] \
        [--checkpoint-dir src/fames/assets/models] [--library FILE]

Writes ``benchmarks/results/fidelity.json`` and ``benchmarks/results/fidelity.md`` and prints the table.
The committed record is ``--threads 1 --test-size 2000 --joints 30`` (every single-layer substitution of the
built-in library, 118 / 201 / 556, on 1,024 calibration images; test changes on a seeded 2,000-image
subset; about 63 minutes on one core); the ``--quick`` record (at most 8 substitutions per layer, 10 joints)
is ``benchmarks/results/fidelity_quick/`` (``--results`` names the folder), and ``--quick --calibration 512
--results benchmarks/results/fidelity_c512`` (the images `fames select` counts on since 2026-12-06) is
committed too.

For each reference checkpoint ``<dir>/<model>_mp.safetensors``:

1. Counting matrices (`fames.sensitivity.counting_matrices`) on a seeded subset of 1,024 training images
   (the calibration set), with `fames.select`'s default ``groups`` and ``pad_taps=True``.
2. Every single-layer substitution: each characterised approximate multiplier of the layer's operand format
   (``--quick``: at most 8 per layer spread across the energy range) is emulated alone
   (`fames.emulation.approximate_`) and measured on the calibration subset and on the test split (loss and
   accuracy change against the exact quantized model; ``--quick`` uses a seeded 2,000-image test subset).
3. Every estimator of `fames.sensitivity.ESTIMATORS` is compared with the measured change of the mean
   calibration loss (the quantity the estimates predict): Spearman and Pearson per model and per layer,
   the median ratio estimate / measured (over substitutions that raise the loss), the same correlations
   against the test-loss change, and (``*_mild``) over the mild substitutions only: those whose
   single-layer calibration accuracy drop is at most ``--mild-max-drop`` points (the regime a selection
   under a 1-point budget works in; catastrophic multipliers saturate the loss and Taylor terms explode).
4. Additivity: random multi-layer assignments (30; ``--quick`` 10) drawn from the mild substitutions
   (with no mild candidate a layer stays exact): the summed estimates and the summed measured single-layer
   changes are compared with the measured joint change.

``best_estimator`` is the estimator with the highest score, the mean over models of
``(Spearman of single-layer substitutions + Spearman of summed estimates vs joint changes) / 2``: the
selection ILP adds estimates over layers, so an estimator must rank single substitutions *and* add up.
(On single-layer Spearman alone fisher, curvature and abs are within 0.005 of each other; their sums
differ a lot: fisher's first-order part is noise of either sign that accumulates over 22 ResNet layers.)
When ``benchmarks/results/journal_ranking.json`` exists (`journal_ranking.py`: the summed estimates
against the thousands of assignments that long NSGA-II runs measured; ``--journal-ranking FILE`` names
another, ``--journal-ranking none`` leaves it out), the score has a third term, the mean over its models of
the Spearman of ``sum of <estimator>`` against the measured validation drop over the assignments measured
between 0.3 and 2 points: the ten random assignments above say little about how whole assignments near a
1-point budget rank, and that is what decides the budget search's candidates (over all assignments with a
drop of at most 3 points the same estimator ranks first).
``python benchmarks/fidelity.py --rescore FILE`` recomputes the ranking and tables of a record.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    CALIBRATION_SIZE,
    DEFAULT_CHECKPOINT_DIR,
    REFERENCE_MODELS,
    RESULTS,
    ROOT,
    SELECT_GROUPS,
    Reference,
    candidates,
    checkpoint_paths,
    correlation,
    environment,
    load_reference,
    markdown_table,
    median_ratio,
    open_library,
    parse_models,
    spread,
    write_outputs,
)
from journal_ranking import NEAR_BUDGET as JOURNAL_BAND

from fames.emulation.api import approximate_
from fames.multipliers.appmul import AppMul
from fames.quant.api import quant_layers
from fames.selection.api import COUNTING_DTYPE
from fames.selection.evaluate import EvalResult, evaluate_model
from fames.sensitivity import DEFAULT_ESTIMATOR, ESTIMATORS, counting_matrices, estimate_layer
from fames.sensitivity.compensation import OffsetTable, choose_compensation
from fames.sensitivity.counting import CountingResult

log = logging.getLogger("benchmarks.fidelity")
DEFAULT_JOURNAL_RANKING = RESULTS / "journal_ranking.json"


@dataclass
class Change:
    """Measured change against the exact model: mean loss (nats) and top-1 accuracy (points)."""

    dloss_cal: float
    dloss_test: float
    dacc_cal: float
    dacc_test: float


class Measurer:
    """Evaluates assignments on the calibration subset and the test data in one batched pass."""

    def __init__(self, ref: Reference, library, test_x: torch.Tensor, test_y: torch.Tensor,
                 batch_size: int) -> None:
        self.model, self.library, self.batch_size = ref.model, library, batch_size
        self.n_cal = len(ref.calibration)
        self.x = torch.cat([ref.calibration.x, test_x])
        self.y = torch.cat([ref.calibration.y, test_y])
        self.evaluations, self.seconds = 0, 0.0
        self.base = self._run({})

    def _run(self, assignment: Mapping[str, str], offsets: Mapping[str, Any] | None = None,
             test: bool = True) -> tuple[EvalResult, EvalResult]:
        start = time.perf_counter()
        approximate_(self.model, assignment, self.library, offsets=offsets)
        n = len(self.x) if test else self.n_cal
        try:
            res = evaluate_model(self.model, self.x[:n], self.y[:n], self.batch_size)
        finally:
            approximate_(self.model, {}, self.library)
        self.evaluations += 1
        self.seconds += time.perf_counter() - start
        cal = EvalResult(res.correct[: self.n_cal], res.loss[: self.n_cal])
        test = EvalResult(res.correct[self.n_cal :], res.loss[self.n_cal :])
        return cal, test

    def change(self, assignment: Mapping[str, str]) -> Change:
        """Measured change of `assignment` against the exact model."""
        cal, test = self._run(assignment)
        base_cal, base_test = self.base
        return Change(float(cal.loss.mean() - base_cal.loss.mean()),
                      float(test.loss.mean() - base_test.loss.mean()),
                      cal.accuracy - base_cal.accuracy, test.accuracy - base_test.accuracy)

    def change_cal(self, assignment: Mapping[str, str], offsets: Mapping[str, Any]) -> dict[str, float]:
        """Calibration-loss and accuracy change of `assignment` with compensation `offsets`."""
        cal, _ = self._run(assignment, offsets, test=False)
        base_cal, _ = self.base
        return {"dloss_cal": float(cal.loss.mean() - base_cal.loss.mean()),
                "dacc_cal": cal.accuracy - base_cal.accuracy}


FIDELITY_CALIBRATION = 1024  # more images measure each substitution's loss change more precisely


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few substitutions per layer, test subset, 10 joints")
    p.add_argument("--rescore", type=Path, default=None, help="recompute the ranking of an existing record")
    p.add_argument("--models", default=",".join(REFERENCE_MODELS), help="comma-separated reference models")
    p.add_argument("--checkpoint-dir", type=Path, default=DEFAULT_CHECKPOINT_DIR)
    p.add_argument("--library", default=None, help="library file (default: the built-in library)")
    p.add_argument("--max-per-layer", type=int, default=None, help="substitutions per layer (quick: 8)")
    p.add_argument("--joints", type=int, default=None,
                   help="random multi-layer assignments (default 30, quick 10)")
    p.add_argument("--mild-max-drop", type=float, default=5.0,
                   help="mild substitutions (mild statistics, joint pool): calibration accuracy drop <= this "
                   "(points)")
    p.add_argument("--test-size", type=int, default=None, help="test images (default all, quick 2000)")
    p.add_argument("--groups", type=int, default=SELECT_GROUPS,
                   help="micro-batch groups of the counting pass (default: fames.select's)")
    p.add_argument("--calibration", type=int, default=FIDELITY_CALIBRATION,
                   help="calibration images (default 1,024: the committed record's; fames select now counts on "
                        f"{CALIBRATION_SIZE})")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--journal-ranking", type=Path, default=None,
                   help="journal_ranking.py record for the score's third term (default: "
                        "benchmarks/results/journal_ranking.json when it exists; 'none' leaves it out)")
    args = p.parse_args(argv)
    if args.max_per_layer is None:
        args.max_per_layer = 8 if args.quick else None
    if args.joints is None:
        args.joints = 10 if args.quick else 30
    if args.test_size is None:
        args.test_size = 2000 if args.quick else None
    return args


def layer_candidates(ref: Reference, library, max_per_layer: int | None) -> dict[str, list[AppMul]]:
    """Per quantized layer, the multipliers to substitute (spread over the energy range when limited)."""
    return {name: spread(candidates(library, layer.operand_format), max_per_layer)
            for name, layer in quant_layers(ref.model)}


def measure_singles(measurer: Measurer, cands: Mapping[str, list[AppMul]]) -> list[dict[str, Any]]:
    """One row per single-layer substitution with its measured change."""
    rows = []
    for layer, muls in cands.items():
        for mul in muls:
            change = measurer.change({layer: mul.name})
            rows.append({"layer": layer, "multiplier": mul.name, "family": mul.family,
                         "energy_pj": mul.energy_pj, **asdict(change)})
        log.info("%s: %d substitutions measured (%.1f s so far)", layer, len(muls), measurer.seconds)
    return rows


def add_estimates(rows: list[dict[str, Any]], counts: CountingResult, cands: Mapping[str, list[AppMul]]
                  ) -> dict[str, float]:
    """Add ``estimates[estimator]`` to every row; returns seconds per estimator (all layers)."""
    seconds = {}
    index = {(r["layer"], r["multiplier"]): r for r in rows}
    for r in rows:
        r["estimates"], r["estimates_compensated"] = {}, {}
    for est in ESTIMATORS:
        start = time.perf_counter()
        for layer, muls in cands.items():
            for name, value in estimate_layer(counts.layers[layer], muls, est).items():
                index[(layer, name)]["estimates"][est] = value
        seconds[est] = time.perf_counter() - start
        for layer, muls in cands.items():
            for name, value in estimate_layer(counts.layers[layer], muls, est, compensate=True).items():
                index[(layer, name)]["estimates_compensated"][est] = value
    return seconds


def measure_compensated(measurer: Measurer, rows: list[dict[str, Any]], offsets: OffsetTable) -> None:
    """Add ``compensated`` (calibration change with the pair's mean-error compensation) to every row."""
    for r in rows:
        assignment = {r["layer"]: r["multiplier"]}
        off = offsets.for_assignment(assignment)
        r["compensated"] = (measurer.change_cal(assignment, off) if off
                            else {"dloss_cal": r["dloss_cal"], "dacc_cal": r["dacc_cal"]})


def selection_variant(rows: Sequence[dict[str, Any]], est: str
                      ) -> tuple[list[float], list[float], set[tuple[str, str]]]:
    """What `fames.select` sees with `est`: per row the lower of the plain and compensated estimates, the
    measured change of the variant it picks, and the (layer, multiplier) pairs that pick compensation."""
    plain = {r["layer"]: {} for r in rows}
    comp = {r["layer"]: {} for r in rows}
    for r in rows:
        plain[r["layer"]][r["multiplier"]] = r["estimates"][est]
        comp[r["layer"]][r["multiplier"]] = r["estimates_compensated"][est]
    table, pairs = choose_compensation(plain, comp)
    estimates = [table[r["layer"]][r["multiplier"]] for r in rows]
    measured = [r["compensated"]["dloss_cal"] if (r["layer"], r["multiplier"]) in pairs else r["dloss_cal"]
                for r in rows]
    return estimates, measured, pairs


def compensation_stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per estimator: fidelity of the compensated estimates against compensated measurements, and of the
    selection's choice between the two (what `fames.select` uses)."""
    out = {}
    for est in ESTIMATORS:
        comp = correlation([r["estimates_compensated"][est] for r in rows],
                           [r["compensated"]["dloss_cal"] for r in rows])
        e, m, pairs = selection_variant(rows, est)
        sel = correlation(e, m)
        per_layer = {}
        for layer in dict.fromkeys(r["layer"] for r in rows):
            idx = [i for i, r in enumerate(rows) if r["layer"] == layer]
            per_layer[layer] = correlation([e[i] for i in idx], [m[i] for i in idx])
        out[est] = {"spearman_compensated": comp["spearman"], "pearson_compensated": comp["pearson"],
                    "spearman": sel["spearman"], "pearson": sel["pearson"], "n_substitutions": sel["n"],
                    "n_compensated": len(pairs), "median_ratio": median_ratio(e, m), "per_layer": per_layer}
    return out


def compensated_additivity(measurer: Measurer, rows: Sequence[dict[str, Any]],
                           assignments: Sequence[dict[str, str]], offsets: OffsetTable) -> dict[str, Any]:
    """Joint assignments as `fames.select` would apply them with the default estimator: summed selection
    estimates against the measured joint calibration change with the chosen compensation."""
    e, _, pairs = selection_variant(rows, DEFAULT_ESTIMATOR)
    index = {(r["layer"], r["multiplier"]): i for i, r in enumerate(rows)}
    chosen = OffsetTable(offsets.stats, offsets.library, pairs)
    joints = []
    for a in assignments:
        change = measurer.change_cal(a, chosen.for_assignment(a))
        joints.append({"assignment": a, **change,
                       "sum_estimate": float(sum(e[index[(layer, mul)]] for layer, mul in a.items()))})
    pred, measured = [j["sum_estimate"] for j in joints], [j["dloss_cal"] for j in joints]
    return {"estimator": DEFAULT_ESTIMATOR, "n_assignments": len(joints), **correlation(pred, measured),
            "median_ratio": median_ratio(pred, measured), "assignments": joints}


def estimator_stats(rows: Sequence[dict[str, Any]], mild_max_drop: float) -> dict[str, dict[str, Any]]:
    """Per estimator: correlations with the measured calibration/test loss change, overall and per layer."""
    out = {}
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    mild = [r for r in rows if -r["dacc_cal"] <= mild_max_drop]
    for est in ESTIMATORS:
        e = [r["estimates"][est] for r in rows]
        cal = correlation(e, [r["dloss_cal"] for r in rows])
        test = correlation(e, [r["dloss_test"] for r in rows])
        em = [r["estimates"][est] for r in mild]
        cal_mild = correlation(em, [r["dloss_cal"] for r in mild])
        per_layer = {}
        for layer in layers:
            sub = [r for r in rows if r["layer"] == layer]
            es = [r["estimates"][est] for r in sub]
            c = correlation(es, [r["dloss_cal"] for r in sub])
            per_layer[layer] = {**c, "median_ratio": median_ratio(es, [r["dloss_cal"] for r in sub])}
        out[est] = {"spearman": cal["spearman"], "pearson": cal["pearson"], "n_substitutions": cal["n"],
                    "median_ratio": median_ratio(e, [r["dloss_cal"] for r in rows]),
                    "spearman_test": test["spearman"], "pearson_test": test["pearson"],
                    "spearman_mild": cal_mild["spearman"], "pearson_mild": cal_mild["pearson"],
                    "n_mild": cal_mild["n"],
                    "median_ratio_mild": median_ratio(em, [r["dloss_cal"] for r in mild]),
                    "per_layer": per_layer}
    return out


def joint_assignments(rows: Sequence[dict[str, Any]], n: int, max_drop: float, seed: int
                      ) -> list[dict[str, str]]:
    """Up to `n` distinct random assignments over >= 2 layers from the mild single-layer substitutions."""
    pool: dict[str, list[str]] = {}
    for r in rows:
        if -r["dacc_cal"] <= max_drop:
            pool.setdefault(r["layer"], []).append(r["multiplier"])
    layers = sorted(pool)
    if len(layers) < 2:
        log.warning("additivity: fewer than two layers have mild substitutions; no joint assignments")
        return []
    rng = np.random.default_rng(seed)
    seen: set[tuple[tuple[str, str], ...]] = set()
    out: list[dict[str, str]] = []
    for _ in range(50 * n):
        if len(out) >= n:
            break
        k = int(rng.integers(2, len(layers) + 1))
        chosen = rng.choice(layers, size=k, replace=False)
        assignment = {str(layer): str(rng.choice(pool[layer])) for layer in sorted(chosen)}
        key = tuple(sorted(assignment.items()))
        if key not in seen:
            seen.add(key)
            out.append(assignment)
    return out


def additivity(measurer: Measurer, rows: Sequence[dict[str, Any]], assignments: Sequence[dict[str, str]]
               ) -> dict[str, Any]:
    """Measured joint changes against summed single-layer estimates and summed measured singles."""
    index = {(r["layer"], r["multiplier"]): r for r in rows}
    joints = []
    for a in assignments:
        singles = [index[(layer, mul)] for layer, mul in a.items()]
        change = measurer.change(a)
        joints.append({"assignment": a, **asdict(change),
                       "sum_measured_cal": float(sum(s["dloss_cal"] for s in singles)),
                       "sum_estimates": {est: float(sum(s["estimates"][est] for s in singles))
                                         for est in ESTIMATORS}})
    measured = [j["dloss_cal"] for j in joints]
    stats = {"n_assignments": len(joints),
             "sum_measured_vs_joint": {**correlation([j["sum_measured_cal"] for j in joints], measured),
                                       "median_ratio": median_ratio([j["sum_measured_cal"] for j in joints],
                                                                    measured)},
             "estimators": {}}
    for est in ESTIMATORS:
        pred = [j["sum_estimates"][est] for j in joints]
        stats["estimators"][est] = {**correlation(pred, measured),
                                    "median_ratio": median_ratio(pred, measured)}
    stats["assignments"] = joints
    return stats


def run_model(name: str, path: Path, library, args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark on one reference model."""
    t0 = time.perf_counter()
    ref = load_reference(name, path, args.calibration, args.seed)
    test = ref.data.test if args.test_size is None else ref.data.test.subset(args.test_size, seed=args.seed)
    cands = layer_candidates(ref, library, args.max_per_layer)
    approximate_(ref.model, {}, library)
    t_load = time.perf_counter() - t0
    counts = counting_matrices(ref.model, (ref.calibration.x, ref.calibration.y), groups=args.groups,
                               pad_taps=True, dtype=COUNTING_DTYPE)  # as fames.select counts
    measurer = Measurer(ref, library, test.x, test.y, args.batch_size)
    rows = measure_singles(measurer, cands)
    t_singles, n_singles = measurer.seconds, measurer.evaluations
    est_seconds = add_estimates(rows, counts, cands)
    stats = estimator_stats(rows, args.mild_max_drop)
    assignments = joint_assignments(rows, args.joints, args.mild_max_drop, args.seed)
    joints = additivity(measurer, rows, assignments)
    t_plain = measurer.seconds
    offsets = OffsetTable({n: lc.channel for n, lc in counts.layers.items()}, library)
    measure_compensated(measurer, rows, offsets)
    compensation = {"estimators": compensation_stats(rows),
                    "additivity": compensated_additivity(measurer, rows, assignments, offsets),
                    "seconds": measurer.seconds - t_plain}
    base_cal, base_test = measurer.base
    return {
        "checkpoint": str(path),
        "dataset": ref.header.get("dataset"),
        "layers": {n: {"format": lay.operand_format.name, "candidates": len(cands[n])}
                   for n, lay in quant_layers(ref.model)},
        "base": {"loss_cal": float(base_cal.loss.mean()), "accuracy_cal": base_cal.accuracy,
                 "loss_test": float(base_test.loss.mean()), "accuracy_test": base_test.accuracy},
        "n_test": len(test),
        "estimators": stats,
        "additivity": joints,
        "compensation": compensation,
        "substitutions": rows,
        "timings": {"load": t_load, "counting": counts.seconds,
                    "counting_memory_mb": counts.memory_bytes / 1e6, "estimation": est_seconds,
                    "single_evaluations": t_singles, "n_single_evaluations": n_singles,
                    "seconds_per_evaluation": t_singles / max(n_singles, 1),
                    "joint_evaluations": t_plain - t_singles,
                    "total": time.perf_counter() - t0},
    }


def journal_spearman(journal: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Per estimator, the mean over a `journal_ranking.py` record's models of the Spearman of its summed
    estimates in the band around a 1-point budget (empty without a record)."""
    if not journal:
        return {}
    out: dict[str, float | None] = {}
    for est in ESTIMATORS:
        values = [m["bands"][JOURNAL_BAND]["spearman"].get(f"sum of {est}") for m in journal["models"]]
        values = [v for v in values if v is not None]
        out[est] = float(np.mean(values)) if values else None
    return out


def best_estimator(models: Mapping[str, dict[str, Any]], journal: Mapping[str, Any] | None = None
                   ) -> tuple[str | None, dict[str, float | None], dict[str, float | None]]:
    """Best estimator by score (mean of single-layer, additivity and, given a `journal_ranking.py` record,
    GA-journal Spearman), the scores and the single-layer mean Spearman of every estimator."""
    means: dict[str, float | None] = {}
    scores: dict[str, float | None] = {}
    ranked_journal = journal_spearman(journal)
    for est in ESTIMATORS:
        single = [m["estimators"][est]["spearman"] for m in models.values()]
        joint = [m["additivity"]["estimators"][est]["spearman"] for m in models.values()]
        single = [v for v in single if v is not None]
        joint = [v for v in joint if v is not None]
        means[est] = float(np.mean(single)) if single else None
        terms: list[float] = []
        if single and joint:
            terms = [float(np.mean(single)), float(np.mean(joint))]
            near_budget = ranked_journal.get(est)
            if journal:  # with a journal record, an estimator it does not cover gets no score
                terms = terms + [near_budget] if near_budget is not None else []
        scores[est] = float(np.mean(terms)) if terms else None
    ranked = [e for e in scores if scores[e] is not None]
    return (max(ranked, key=lambda e: scores[e]) if ranked else None), scores, means


def markdown(record: dict[str, Any]) -> str:
    """Estimator table per model, additivity table, best estimator."""
    rows, add_rows = [], []
    for model, m in record["models"].items():
        for est, s in m["estimators"].items():
            rows.append([model, est + (" (default)" if est == DEFAULT_ESTIMATOR else ""), s["spearman"],
                         s["pearson"], s["spearman_test"], s["median_ratio"], s["n_substitutions"],
                         s["spearman_mild"], s["pearson_mild"], s["median_ratio_mild"], s["n_mild"]])
        a = m["additivity"]
        sm = a["sum_measured_vs_joint"]
        add_rows.append([model, "sum of measured singles", sm["spearman"], sm["pearson"], sm["median_ratio"],
                         a["n_assignments"]])
        for est, s in a["estimators"].items():
            add_rows.append([model, f"sum of {est}", s["spearman"], s["pearson"], s["median_ratio"],
                             a["n_assignments"]])
    layer_rows = []
    for model, m in record["models"].items():
        for layer, s in m["estimators"][DEFAULT_ESTIMATOR]["per_layer"].items():
            best = record["best_estimator"]
            other = m["estimators"][best]["per_layer"][layer]["spearman"] if best else None
            layer_rows.append([model, layer, m["layers"][layer]["format"], s["n"], s["spearman"],
                               s["pearson"], s["median_ratio"], other])
    comp_rows, comp_add = [], []
    for model, m in record["models"].items():
        c = m.get("compensation")
        if not c:
            continue
        for est, st in c["estimators"].items():
            comp_rows.append([model, est + (" (default)" if est == DEFAULT_ESTIMATOR else ""),
                              st["spearman_compensated"], st["pearson_compensated"], st["spearman"],
                              st["pearson"], st["median_ratio"], st["n_compensated"], st["n_substitutions"]])
        a = c["additivity"]
        comp_add.append([model, a["estimator"], a["spearman"], a["pearson"], a["median_ratio"], a["n_assignments"]])
    best = record["best_estimator"]
    parts = [
        f"## Estimator fidelity ({record['settings']['mode']}, library {record['settings']['library']})",
        "Correlation of each estimate with the measured change of the mean calibration loss over "
        "single-layer substitutions (Spearman/Pearson; `spearman_test`: against the test-loss change; "
        "median ratio estimate/measured over substitutions that raise the loss). *mild*: substitutions "
        f"whose calibration accuracy drop is at most {record['settings']['mild_max_drop_pts']} points.",
        markdown_table(["model", "estimator", "Spearman", "Pearson", "Spearman (test)", "median ratio", "n",
                        "Spearman mild", "Pearson mild", "ratio mild", "n mild"], rows),
        f"### Per layer ({DEFAULT_ESTIMATOR}; last column: Spearman of the best estimator, {best})",
        markdown_table(["model", "layer", "format", "n", "Spearman", "Pearson", "median ratio",
                        f"Spearman {best}"], layer_rows),
        "### Additivity (random multi-layer assignments: predicted vs measured joint calibration-loss "
        "change)",
        markdown_table(["model", "predictor", "Spearman", "Pearson", "median ratio", "n"], add_rows),
        "Mean Spearman over models: " + ", ".join(f"{e} {v:.3f}" if v is not None else f"{e} -"
                                                  for e, v in record["mean_spearman"].items())
        + (f". GA-journal Spearman near the budget (`journal_ranking.py`, {JOURNAL_BAND} pt): "
           + ", ".join(f"{e} {v:.3f}" if v is not None else f"{e} -" for e, v in record["journal_spearman"].items())
           if record.get("journal_spearman") else "")
        + (". Score (mean of single-layer, additivity and GA-journal Spearman): " if record.get("journal_spearman")
           else ". Score (mean of single-layer and additivity Spearman): ")
        + ", ".join(f"{e} {v:.3f}" if v is not None else f"{e} -" for e, v in record["score"].items())
        + f". **Best estimator: {best}** (default: {DEFAULT_ESTIMATOR}).",
    ]
    if comp_rows:
        parts += [
            "### With mean-error compensation (`fames.select`'s default)",
            "*compensated*: every substitution with its per-channel accumulator offset, estimated with "
            "`compensate=True`, against its measured calibration-loss change. *selection*: per substitution "
            "the lower of the plain and compensated estimates and the measured change of that variant (what "
            "the selection ILP sees and what it applies); *n comp.*: substitutions where compensation won.",
            markdown_table(["model", "estimator", "Spearman comp.", "Pearson comp.", "Spearman selection",
                            "Pearson selection", "median ratio", "n comp.", "n"], comp_rows),
            "Additivity of the selection variant (summed estimates vs measured joint calibration change, "
            "joint assignments applied with the default estimator's compensation choices):",
            markdown_table(["model", "estimator", "Spearman", "Pearson", "median ratio", "n"], comp_add),
        ]
    return "\n\n".join(parts)


def load_journal_ranking(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The `journal_ranking.py` record at `path` (None: none, or the default one when it exists)."""
    if path is None:
        path = DEFAULT_JOURNAL_RANKING
        if not path.is_file():
            return None, None
    elif str(path) == "none":
        return None, None
    try:
        record = json.loads(path.read_text())
        if record.get("benchmark") != "journal_ranking":
            raise ValueError("not a journal_ranking record")
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--journal-ranking {path}: {exc}") from None
    resolved = path.resolve()
    return record, str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def rescore(path: Path, journal_path: Path | None) -> int:
    """Recompute ranking, default and tables of an existing record from its own measurements."""
    record = json.loads(path.read_text())
    journal, journal_label = load_journal_ranking(journal_path)
    best, scores, means = best_estimator(record["models"], journal)
    record.update(best_estimator=best, score=scores, mean_spearman=means, default_estimator=DEFAULT_ESTIMATOR,
                  journal_ranking=journal_label, journal_spearman=journal_spearman(journal))
    path.write_text(json.dumps(record, indent=2) + "\n")
    text = markdown(record)
    path.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rescore:
        return rescore(args.rescore, args.journal_ranking)
    journal, journal_label = load_journal_ranking(args.journal_ranking)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    library, lib_label = open_library(args.library)
    paths = checkpoint_paths(parse_models(args.models), args.checkpoint_dir)
    if not paths:
        raise SystemExit(f"no reference checkpoint found in {args.checkpoint_dir}")
    start = time.perf_counter()
    models = {}
    for name, path in paths.items():
        log.info("model %s (%s)", name, path)
        models[name] = run_model(name, path, library, args)
    best, scores, means = best_estimator(models, journal)
    record = {
        "benchmark": "fidelity",
        "best_estimator": best,
        "default_estimator": DEFAULT_ESTIMATOR,
        "score": scores,
        "mean_spearman": means,
        "journal_ranking": journal_label,
        "journal_spearman": journal_spearman(journal),
        "models": models,
        "settings": {"mode": "quick" if args.quick else "full", "library": lib_label,
                     "calibration": args.calibration, "groups": args.groups, "pad_taps": True,
                     "max_per_layer": args.max_per_layer, "joints": args.joints,
                     "mild_max_drop_pts": args.mild_max_drop, "test_size": args.test_size, "seed": args.seed,
                     "batch_size": args.batch_size, "estimators": list(ESTIMATORS)},
        "environment": environment(args.threads),
        "seconds": time.perf_counter() - start,
    }
    write_outputs("fidelity", record, markdown(record), args.results or Path(__file__).parent / "results")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
