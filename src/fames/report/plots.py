"""The report's figures (matplotlib, Agg canvas, no pyplot state): one PNG file each.

- ``layers.png``: per-layer weight/activation bits, chosen multiplier and share of multiplier energy;
- ``pareto.png``: energy/accuracy front of the tau sweep with the chosen point and the exact model;
- ``loss_check.png``: estimated vs measured calibration-loss change of checked Pareto points;
- ``library_fronts.png``: the library's energy vs MRED per operand format in use, chosen ones marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PLOTS = ("layers", "pareto", "loss_check", "library_fronts")
_CHOSEN = "#d62728"
_EXACT = "#1f77b4"


def _new(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def plot_layers(result: Any, path: Path) -> Path:
    """Per-layer bits (bars), chosen multiplier (labels) and multiplier-energy share (line, right axis)."""
    rows = result.layers
    fig, (ax,) = _new(max(6.0, 0.9 * len(rows) + 2), 4.2)
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["w_bits"] for r in rows], 0.4, label="weight bits", color="#9ecae1")
    ax.bar(x + 0.2, [r["a_bits"] for r in rows], 0.4, label="activation bits", color="#c7e9c0")
    ax.set_ylabel("bits")
    ax.set_ylim(0, 10)
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right")
    for i, r in enumerate(rows):
        label = "exact" if r.get("exact") else r["multiplier"].split("_", 1)[-1]
        ax.text(i, 8.6, label, ha="center", va="bottom", fontsize=7, rotation=20,
                color=_EXACT if r.get("exact") else _CHOSEN)
    total = sum(r["energy_pj"] for r in rows) or 1.0
    ax2 = ax.twinx()
    ax2.plot(x, [100 * r["energy_pj"] / total for r in rows], "o-", color="#636363", label="energy share")
    ax2.set_ylabel("share of multiplier energy (%)")
    ax2.set_ylim(0, 105)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncol=3, fontsize=8)
    ax.set_title("Per-layer bits, chosen multiplier (label) and energy share")
    return _save(fig, path)


def plot_pareto(result: Any, path: Path) -> Path:
    """Left: energy reduction vs estimated loss change of the sweep. Right: measured validation accuracy."""
    fig, (ax1, ax2) = _new(10.0, 4.2, ncols=2)
    pts = result.pareto
    red = result.energy.reduction_pct
    if pts:
        ax1.plot([p.estimated_dl for p in pts], [p.reduction_pct for p in pts], ".-", color="#7f7f7f",
                 label="ILP sweep (tau)")
    ax1.scatter([0.0], [0.0], marker="s", color=_EXACT, zorder=3, label="exact multipliers")
    chosen_dl = next((p.estimated_dl for p in pts if dict(p.assignment) == dict(result.assignment)), None)
    if chosen_dl is None and all(r.get("exact") for r in result.layers):
        chosen_dl = 0.0  # the exact fallback
    if chosen_dl is not None:
        ax1.scatter([chosen_dl], [red], marker="*", s=160, color=_CHOSEN, zorder=4, label="chosen")
    positive = [p.estimated_dl for p in pts if p.estimated_dl > 0]
    if positive and max(positive) / min(positive) > 100:
        ax1.set_xscale("symlog", linthresh=min(positive))
    ax1.set_xlabel("estimated calibration-loss change")
    ax1.set_ylabel("multiplier energy reduction (%)")
    ax1.set_title("Energy / estimated-loss front")
    ax1.legend(fontsize=8)
    ev = [p for p in pts if p.accuracy is not None]
    if ev:
        ax2.scatter([p.reduction_pct for p in ev], [p.accuracy for p in ev],
                    c=["#2ca02c" if p.accepted else "#ff7f0e" for p in ev],
                    label="evaluated (green: accepted)")
    ax2.scatter([0.0], [result.val_accuracy_exact], marker="s", color=_EXACT, zorder=3,
                label="exact multipliers")
    ax2.scatter([red], [result.val_accuracy_approximate], marker="*", s=160, color=_CHOSEN, zorder=4,
                label="chosen")
    budget = result.config.get("max_accuracy_drop")
    if budget is not None:
        ax2.axhline(result.val_accuracy_exact - budget, ls="--", color="#7f7f7f", lw=1, label="budget")
    ax2.set_xlabel("multiplier energy reduction (%)")
    ax2.set_ylabel("validation accuracy (%)")
    ax2.set_title("Energy / measured accuracy")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_check(result: Any, path: Path) -> Path:
    """Estimated vs measured mean calibration-loss change, with the identity line."""
    fig, (ax,) = _new(5.2, 4.4)
    pts = result.loss_points
    if pts:
        est = np.array([p["estimated_dl"] for p in pts])
        meas = np.array([p["measured_dl"] for p in pts])
        ax.scatter(est, meas, color="#7f7f7f", label="Pareto points")
        ch = [p for p in pts if p["chosen"]]
        if ch:
            ax.scatter([p["estimated_dl"] for p in ch], [p["measured_dl"] for p in ch], marker="*", s=160,
                       color=_CHOSEN, label="chosen")
        lo, hi = float(min(est.min(), meas.min(), 0.0)), float(max(est.max(), meas.max(), 1e-9))
        ax.plot([lo, hi], [lo, hi], "--", color="#bdbdbd", lw=1, label="estimate = measured")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no Pareto points to check\n(assignment given, or nothing approximate)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"estimated loss change ({result.config.get('estimator', '')})")
    ax.set_ylabel("measured loss change (calibration)")
    ax.set_title("Estimate vs measurement")
    return _save(fig, path)


def plot_library_fronts(result: Any, path: Path, metric: str = "mred") -> Path:
    """Energy vs `metric` of every characterised multiplier of each format in use; front and choices."""
    library = result.library
    fmts = list(dict.fromkeys(r["format"] for r in result.layers))
    fig, axes = _new(max(4.5 * len(fmts), 5.0), 4.2, ncols=max(len(fmts), 1))
    chosen = {r["multiplier"] for r in result.layers}
    for ax, fmt in zip(axes, fmts, strict=False):
        muls = [m for m in library.filter(fmt) if m.hardware is not None]
        ax.scatter([m.energy_pj for m in muls], [library.metric(m, metric) for m in muls], s=10,
                   color="#bdbdbd", label="library")
        front = library.pareto(fmt, metric)
        ax.plot([m.energy_pj for m in front], [library.metric(m, metric) for m in front], ".-",
                color="#636363", label="Pareto front")
        exact = library.exact(fmt)
        if exact.hardware is not None:
            ax.scatter([exact.energy_pj], [0.0], marker="s", color=_EXACT, zorder=3, label="exact")
        mine = [m for m in muls if m.name in chosen and not m.is_exact]
        if mine:
            ax.scatter([m.energy_pj for m in mine], [library.metric(m, metric) for m in mine], marker="*",
                       s=160, color=_CHOSEN, zorder=4, label="chosen")
        ax.set_xlabel("energy per multiplication (pJ)")
        ax.set_ylabel(metric.upper())
        ax.set_title(fmt)
        ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(result: Any, out_dir: Path) -> dict[str, Path]:
    """Write every plot of `PLOTS` into ``out_dir/plots/``. Returns ``{name: path}``."""
    pdir = Path(out_dir) / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    makers = {"layers": plot_layers, "pareto": plot_pareto, "loss_check": plot_loss_check,
              "library_fronts": plot_library_fronts}
    return {name: makers[name](result, pdir / f"{name}.png") for name in PLOTS}
