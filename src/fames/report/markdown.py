"""``report.md``: the human-readable report (key figures, per-layer table, plots, provenance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT_CAPTIONS = {
    "layers": "Per-layer bits, chosen multiplier and share of multiplier energy",
    "pareto": "Energy/accuracy Pareto front of the tau sweep, chosen point and exact model",
    "loss_check": "Estimated vs measured calibration-loss change",
    "library_fronts": "Library energy/MRED fronts of the operand formats in use, chosen multipliers marked",
}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def key_figures(result: Any) -> list[tuple[str, str]]:
    """(label, value) rows of the headline table, shared by the Markdown and HTML reports."""
    e = result.energy
    d = result.drop
    sure = ("" if d is None else
            f" (validation drop {d.drop_pts:.2f} pt, upper {d.confidence:.0%} bound {d.upper_pts:.2f} pt, "
            f"P(within budget) ~ {d.prob_within_budget:.2f})")
    return [
        ("Multiplier energy reduction", f"{e.reduction_pct:.2f} % ({e.multiplier_pj:.4g} vs "
                                        f"{e.reference_pj:.4g} pJ per inference)"),
        ("MAC energy reduction (with accumulators)", f"{e.mac_reduction_pct:.2f} %"),
        ("Test accuracy: float", _pct(result.accuracy_float)),
        ("Test accuracy: quantized (exact multipliers)", _pct(result.accuracy_quantized)),
        ("Test accuracy: approximate multipliers", _pct(result.accuracy_approximate)),
        ("Test accuracy drop", f"{result.accuracy_drop:.2f} points{sure}"),
        ("Accuracy budget", f"{result.config.get('max_accuracy_drop')} points (decided on validation)"),
        ("Selection time", f"{result.selection_seconds:.1f} s"),
    ]


def layer_table(result: Any) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-layer table."""
    total = sum(r["energy_pj"] for r in result.layers) or 1.0
    head = ["layer", "format", "w/a bits", "MACs", "multiplier", "mean-error offsets", "pJ/op", "energy share"]
    rows = [[r["name"], r["format"], f"{r['w_bits']}/{r['a_bits']}", f"{r['macs']:,}", r["multiplier"],
             "yes" if r.get("compensated") else "-", f"{r['energy_per_op_pj']:.4g}",
             f"{100 * r['energy_pj'] / total:.1f} %"] for r in result.layers]
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(result: Any, plots: dict[str, str]) -> str:
    """The Markdown text; `plots` maps plot names to paths relative to the report."""
    parts = [f"# fames report: {result.inputs.get('model') or 'model'} on {result.config.get('dataset')}", "",
             _md_table(["", "value"], [list(r) for r in key_figures(result)]), "",
             f"**How the choice was made.** {result.explanation}", "",
             "## Layers", "", _md_table(*layer_table(result)), ""]
    parts += ["## Plots", ""]
    for name, rel in plots.items():
        parts += [f"### {PLOT_CAPTIONS.get(name, name)}", "", f"![{name}]({rel})", ""]
    parts += ["## Time per stage", "",
              _md_table(["stage", "seconds"], [[k, f"{v:.2f}"] for k, v in result.timings.items()]), ""]
    prov = [[k, str(v)] for k, v in result.inputs.items() if k != "hashes"]
    prov += [[f"sha256 {k}", f"`{v}`"] for k, v in result.inputs.get("hashes", {}).items()]
    prov.append(["fames version", result.fames_version])
    parts += ["## Inputs and provenance", "", _md_table(["", ""], prov), "",
              "Files: `summary.json` (all figures), `assignment.json` and, when layers carry mean-error "
              "compensation, `assignment.offsets.json` (per-channel constants added to the accumulator; load "
              "with `fames.emulation.api.load_assignment`, `load_offsets` and `approximate_(..., offsets=)`), "
              "`verilog/` (chosen multipliers and `manifest.csv`).", ""]
    return "\n".join(parts)


def write_markdown(result: Any, plots: dict[str, Path], out_dir: Path) -> Path:
    """Write ``report.md`` linking the plots relative to `out_dir`. Returns its path."""
    out_dir = Path(out_dir)
    rel = {name: p.relative_to(out_dir).as_posix() for name, p in plots.items()}
    path = out_dir / "report.md"
    path.write_text(render_markdown(result, rel))
    return path
