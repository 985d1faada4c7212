"""The product flow shared by `fames run`, `fames select` and `fames demo`.

`run_pipeline` takes a quantized, trained model and returns a `RunResult`:

1. selection on the calibration (counting) and validation (budget search) splits -- or the evaluation
   of a given assignment instead;
2. test accuracy of the quantized (exact multipliers) and the approximated model (the test split never
   steers anything: it is only read here, after the choice);
3. measured calibration-loss change of a few Pareto points, to check the estimates;
4. energies (multiplier and MAC), per-stage seconds, the inputs' hashes and the fames version.

No printing and no files here: `fames.report.write_report` writes the output folder.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fames import __version__
from fames.data.splits import Dataset, Split
from fames.device import model_device, on_device, resolve_device
from fames.emulation.api import approximate_, restore_
from fames.energy import EnergyReport, count_macs, layer_specs, model_energy
from fames.errors import UsageError
from fames.quant.api import bits_of, quant_layers
from fames.selection.api import DEFAULT_CALIBRATION, Selection, select
from fames.selection.budget import DropBound, ParetoPoint, paired_drop
from fames.selection.evaluate import EVALUATION_BATCH, evaluate_model
from fames.sensitivity.estimators import DEFAULT_ESTIMATOR

Progress = Callable[[int, int, dict], None]


@dataclass
class RunResult:
    """Everything a report needs about one run.

    Attributes:
        assignment: ``{layer: multiplier}`` chosen (or given).
        energy: `EnergyReport` of the assignment.
        accuracy_float / accuracy_quantized / accuracy_approximate: test top-1 (percent); float is None
            when unknown.
        val_accuracy_exact / val_accuracy_approximate: validation top-1 used by the decision.
        drop: paired validation drop bound of the assignment (None when all exact).
        explanation: how the choice was made.
        pareto: tau-sweep front (empty when an assignment was given).
        loss_points: ``{"tau", "reduction_pct", "estimated_dl", "measured_dl", "chosen"}`` per checked point.
        layers: per layer ``{"name", "format", "w_bits", "a_bits", "macs", "multiplier", "energy_pj",
            "reference_pj", "energy_per_op_pj"}``.
        timings: seconds per stage (``selection`` included).
        inputs: provenance (paths, names) and ``hashes``.
        config: budget, estimator, calibration size, seed, mode (``select`` or ``given``).
        library: the `Library` (not serialised; reports use it for fronts and Verilog).
        selection: the `Selection` when one was made.
        offsets: ``{layer: accumulator offsets}`` of mean-error compensation applied with the assignment.
    """

    assignment: dict[str, str]
    energy: EnergyReport
    accuracy_float: float | None
    accuracy_quantized: float
    accuracy_approximate: float
    val_accuracy_exact: float
    val_accuracy_approximate: float
    drop: DropBound | None
    explanation: str
    pareto: list[ParetoPoint]
    loss_points: list[dict[str, Any]]
    layers: list[dict[str, Any]]
    timings: dict[str, float]
    inputs: dict[str, Any]
    config: dict[str, Any]
    library: Any = field(repr=False, default=None)
    selection: Selection | None = field(repr=False, default=None)
    offsets: dict[str, list[int]] = field(default_factory=dict)
    fames_version: str = __version__

    @property
    def accuracy_drop(self) -> float:
        """Test drop of the approximated model against the quantized one, in points."""
        return self.accuracy_quantized - self.accuracy_approximate

    @property
    def selection_seconds(self) -> float:
        return self.timings.get("selection", 0.0)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready record written as ``summary.json`` (stable keys, see the README)."""
        e = self.energy
        return {
            "fames_version": self.fames_version,
            "energy_reduction": e.reduction_pct,
            "mac_energy_reduction": e.mac_reduction_pct,
            "accuracy_float": self.accuracy_float,
            "accuracy_quantized": self.accuracy_quantized,
            "accuracy_approximate": self.accuracy_approximate,
            "accuracy_drop": self.accuracy_drop,
            "selection_seconds": self.selection_seconds,
            "assignment": dict(self.assignment),
            "accumulator_offsets": dict(self.offsets),
            "energy": {"multiplier_pj": e.multiplier_pj, "multiplier_reference_pj": e.reference_pj,
                       "mac_pj": e.mac_pj, "mac_reference_pj": e.mac_reference_pj,
                       "adder_pj_per_bit": e.adder_pj_per_bit, "per_sample": True},
            "validation": {"accuracy_exact": self.val_accuracy_exact,
                           "accuracy_approximate": self.val_accuracy_approximate,
                           "drop": None if self.drop is None else dict(self.drop.__dict__),
                           "evaluation_passes": None if self.selection is None else self.selection.evaluation_passes},
            "explanation": self.explanation,
            "anchors": [] if self.selection is None else [dict(a.__dict__) for a in self.selection.anchors],
            "config": dict(self.config),
            "inputs": dict(self.inputs),
            "timings": dict(self.timings),
            "layers": [dict(row) for row in self.layers],
            "pareto": [_point_dict(p) for p in self.pareto],
            "loss_points": [dict(p) for p in self.loss_points],
        }


def _point_dict(p: ParetoPoint) -> dict[str, Any]:
    return {"tau": p.tau, "energy_pj": p.energy_pj, "reduction_pct": p.reduction_pct,
            "estimated_dl": p.estimated_dl, "accuracy": p.accuracy, "accepted": p.accepted,
            "drop_pts": None if p.measured is None else p.measured.drop_pts,
            "upper_pts": None if p.measured is None else p.measured.upper_pts,
            "assignment": dict(p.assignment)}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_dataset(dataset: Dataset) -> str:
    """Hex SHA-256 of a dataset's arrays (train, val, test images and labels, in that order)."""
    h = hashlib.sha256()
    for split in (dataset.train, dataset.val, dataset.test):
        for t in (split.x, split.y):
            h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


def check_budget(points: float) -> float:
    """The accuracy budget in points, 0 <= points <= 100.

    Raises:
        UsageError: outside [0, 100] or not a number.
    """
    if not isinstance(points, (int, float)) or not 0.0 <= float(points) <= 100.0:
        raise UsageError(f"--max-accuracy-drop must be between 0 and 100 points, got {points}")
    return float(points)


def layer_rows(model: nn.Module, macs: Mapping[str, int], energy: EnergyReport, library: Any,
               offsets: Mapping[str, Any] | None = None) -> list[dict]:
    """Per-layer table: format, bits, MACs, multiplier, energies (per sample and per operation), and
    whether the layer carries mean-error compensation offsets."""
    bits = bits_of(model)
    specs = layer_specs(model)
    rows = []
    for name, _ in quant_layers(model):
        per = energy.per_layer[name]
        rows.append({"name": name, "format": specs[name].fmt.name, "w_bits": bits[name]["w"],
                     "a_bits": bits[name]["a"], "macs": int(macs[name]), "multiplier": per["multiplier"],
                     "energy_pj": per["energy_pj"], "reference_pj": per["reference_pj"],
                     "energy_per_op_pj": library.get(per["multiplier"]).energy_pj,
                     "exact": library.get(per["multiplier"]).is_exact,
                     "compensated": name in (offsets or {})})
    return rows


def _test_accuracy(model: nn.Module, split: Split, batch_size: int) -> float:
    return evaluate_model(model, split.x, split.y, batch_size).accuracy


def _loss_points(model: nn.Module, library: Any, pareto: list[ParetoPoint], chosen: Mapping[str, str],
                 cal: Split, n: int, batch_size: int, sel: Selection | None = None) -> list[dict[str, Any]]:
    """Measured mean calibration-loss change of up to `n` Pareto points (evaluated ones first)."""
    if n <= 0 or not pareto:
        return []
    evaluated = [i for i, p in enumerate(pareto) if p.measured is not None]
    rest = [i for i in range(len(pareto)) if i not in evaluated]
    picks = evaluated[:n]
    if len(picks) < n and rest:
        extra = np.unique(np.linspace(0, len(rest) - 1, min(n - len(picks), len(rest))).round().astype(int))
        picks += [rest[k] for k in extra]
    restore_(model)
    base = float(evaluate_model(model, cal.x, cal.y, batch_size).loss.mean())
    out = []
    try:
        for i in sorted(picks):
            p = pareto[i]
            approximate_(model, p.assignment, library,
                         offsets=sel.offsets_for(dict(p.assignment)) if sel is not None else None)
            measured = float(evaluate_model(model, cal.x, cal.y, batch_size).loss.mean()) - base
            out.append({"tau": p.tau, "reduction_pct": p.reduction_pct, "estimated_dl": p.estimated_dl,
                        "measured_dl": measured, "chosen": dict(p.assignment) == dict(chosen)})
    finally:
        restore_(model)
    return out


def _given(model: nn.Module, library: Any, assignment: Mapping[str, str], val: Split, budget: float,
           batch_size: int, seed: int, offsets: Mapping[str, Any] | None = None
           ) -> tuple[dict[str, str], float, float, DropBound | None, str]:
    """Validate and evaluate a user-given assignment (with its compensation offsets) on the validation split."""
    try:
        approximate_(model, assignment, library, offsets=offsets)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"assignment: {exc}") from None
    restore_(model)
    base = evaluate_model(model, val.x, val.y, batch_size).correct
    approximate_(model, assignment, library, offsets=offsets)
    new = evaluate_model(model, val.x, val.y, batch_size).correct
    restore_(model)
    drop = paired_drop(base, new, budget, seed=seed)
    verdict = "within" if drop.upper_pts <= budget else "NOT within"
    comp = f", with compensation offsets on {len(offsets)} layers" if offsets else ""
    why = (f"given assignment (no selection{comp}): validation drop {drop.drop_pts:.2f} pt, upper "
           f"{drop.confidence:.0%} bound {drop.upper_pts:.2f} pt, {verdict} the budget of {budget} pt")
    return dict(assignment), 100.0 * base.mean(), 100.0 * new.mean(), drop, why


def run_pipeline(
    model: nn.Module,
    meta: Mapping[str, Any],
    dataset: Dataset,
    library: Any,
    budget: float = 1.0,
    *,
    estimator: str = DEFAULT_ESTIMATOR,
    calibration: int = DEFAULT_CALIBRATION,
    seed: int = 0,
    assignment: Mapping[str, str] | None = None,
    loss_points: int = 6,
    batch_size: int = EVALUATION_BATCH,
    timings: Mapping[str, float] | None = None,
    inputs: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    select_kwargs: Mapping[str, Any] | None = None,
    compensate: bool = True,
    offsets: Mapping[str, Any] | None = None,
    device: str | None = None,
) -> RunResult:
    """Select (or evaluate a given assignment), then validate on the test split.

    Args:
        model: quantized, trained model (`quantize_`, steps initialised); left with exact multipliers.
        meta: model facts; ``float_test_accuracy`` is reported when present.
        dataset: train (calibration subset), val (budget search) and test (final report) splits.
        library: the multiplier `Library`.
        budget: allowed top-1 drop in points (0..100).
        estimator: sensitivity estimator (a key of `fames.sensitivity.ESTIMATORS`).
        calibration: size of the seeded calibration subset of the training split.
        seed: seed of the calibration subset and of the bootstrap.
        assignment: evaluate this ``{layer: multiplier}`` instead of selecting.
        loss_points: Pareto points whose calibration-loss change is measured (estimate check).
        batch_size: batch size of the passes.
        timings: seconds of earlier stages (loading, quantization, QAT) to include.
        inputs: provenance, e.g. paths and ``{"hashes": {...}}``.
        progress: ``(step, total, {"stage": name})`` callback, called once per stage.
        select_kwargs: extra keyword arguments of `fames.select`.
        compensate: mean-error compensation in the selection.
        offsets: compensation offsets of a given `assignment` (``{layer: per-channel accumulator offsets}``).
        device: torch device of the work (e.g. ``"cuda"``); default: where the model is. The model is
            back on its own device on return.

    Returns:
        A `RunResult`.

    Raises:
        UsageError: bad budget, calibration size, assignment or device.
        ValueError: from the selection (e.g. a layer format missing from the library).
    """
    budget = check_budget(budget)
    if calibration < 1:
        raise UsageError(f"--calibration must be >= 1 image, got {calibration}")
    if not list(quant_layers(model)):
        raise UsageError("the model has no quantized layers: give a bits config (--bits or --auto-bits)")
    stage_names = ["selection", "test", "loss_check"]
    step = 0

    def tick(stage: str) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, len(stage_names), {"stage": stage})

    dev = resolve_device(device) if device is not None else model_device(model)
    cal = dataset.train.subset(calibration, seed=seed).to(dev)  # drawn on the CPU: same images everywhere
    val, test = dataset.val.to(dev), dataset.test.to(dev)
    with on_device(model, dev):
        times = dict(timings or {})
        restore_(model)
        model.eval()
        t0 = time.perf_counter()
        sel: Selection | None = None
        if assignment is None:
            sel = select(model, library, (cal.x, cal.y), (val.x, val.y), budget, estimator,
                         batch_size=batch_size, seed=seed, compensate=compensate, **dict(select_kwargs or {}))
            chosen, val_exact, val_approx = dict(sel.assignment), sel.base_accuracy, sel.accuracy
            drop, why, pareto = sel.drop, sel.explanation, list(sel.pareto)
            times.update({f"selection_{k}": v for k, v in sel.timings.items() if k != "total"})
        else:
            chosen, val_exact, val_approx, drop, why = _given(model, library, assignment, val, budget, batch_size,
                                                              seed, offsets)
            pareto = []
        times["selection"] = time.perf_counter() - t0
        tick("selection")

        t1 = time.perf_counter()
        offsets = dict(sel.offsets) if sel is not None else dict(offsets or {})
        restore_(model)
        acc_q = _test_accuracy(model, test, batch_size)
        approximate_(model, chosen, library, offsets=offsets)
        try:
            acc_a = _test_accuracy(model, test, batch_size)
        finally:
            restore_(model)
        times["test_evaluation"] = time.perf_counter() - t1
        tick("test")

        t2 = time.perf_counter()
        points = _loss_points(model, library, pareto, chosen, cal, loss_points, batch_size, sel)
        times["loss_check"] = time.perf_counter() - t2
        tick("loss_check")

        macs = count_macs(model, val.x[:1])
        energy = model_energy(macs, chosen, library, layer_specs(model))
        cfg = {"max_accuracy_drop": budget, "estimator": estimator, "calibration": len(cal), "seed": seed,
               "compensation": bool(sel is not None and sel.compensated),
               "mode": "select" if assignment is None else "given", "validation": len(val),
               "test": len(test), "dataset": dataset.name,
               **(dict(select_kwargs or {}) if assignment is None else {})}
        info = {"model": meta.get("model"), **dict(inputs or {})}
        return RunResult(
            assignment=chosen, energy=energy, accuracy_float=meta.get("float_test_accuracy"),
            accuracy_quantized=acc_q, accuracy_approximate=acc_a, val_accuracy_exact=float(val_exact),
            val_accuracy_approximate=float(val_approx), drop=drop, explanation=why, pareto=pareto,
            loss_points=points, layers=layer_rows(model, macs, energy, library, offsets), timings=times, inputs=info,
            config=cfg, library=library, selection=sel, offsets=offsets,
        )


def library_source(path: str | os.PathLike | None) -> tuple[Any, dict[str, str]]:
    """Load a library (built-in when `path` is None) and describe it for the provenance record.

    Raises:
        UsageError: the file is missing or unreadable.
    """
    from fames.multipliers.library import builtin_library_path, load_library

    file = Path(path) if path is not None else builtin_library_path()
    try:
        lib = load_library(file)
    except ValueError as exc:
        if path is None:
            raise UsageError(f"the built-in multiplier library {file} is missing or unreadable: "
                             "run `fames lib build` or pass --library FILE") from None
        raise UsageError(str(exc)) from None
    return lib, {"library": "builtin" if path is None else str(path), "library_sha256": sha256_file(file)}

