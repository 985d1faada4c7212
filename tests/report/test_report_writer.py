"""The report folder: records, four PNG plots, self-contained HTML, Verilog manifest, atomic writes."""

from __future__ import annotations

import base64
import csv
import io
import json

import matplotlib.image as mpimg
import pytest

from fames.emulation.api import load_assignment
from fames.errors import UsageError
from fames.report import PLOTS, write_report


def test_report_folder(run_result, tmp_path):
    out = write_report(run_result, tmp_path / "rep")
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert {"summary.json", "assignment.json", "report.md", "report.html", "verilog/manifest.json",
            "verilog/manifest.csv"} <= names
    summary = json.loads((out / "summary.json").read_text())
    for key in ("energy_reduction", "mac_energy_reduction", "accuracy_quantized", "accuracy_approximate",
                "accuracy_drop", "selection_seconds", "assignment", "accuracy_float", "timings",
                "fames_version"):
        assert key in summary
    drop = summary["accuracy_quantized"] - summary["accuracy_approximate"]
    assert summary["accuracy_drop"] == pytest.approx(drop)
    assert load_assignment(out / "assignment.json") == run_result.assignment
    assert len(PLOTS) >= 4
    html = (out / "report.html").read_text()
    assert "src='plots/" not in html and "http" not in html  # self-contained
    for name in PLOTS:
        png = out / "plots" / f"{name}.png"
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0.01  # not blank
        encoded = base64.b64encode(png.read_bytes()).decode("ascii")
        assert f"data:image/png;base64,{encoded}" in html
        assert f"plots/{name}.png" in (out / "report.md").read_text()
    # embedded images decode back to valid PNGs
    first = html.split("data:image/png;base64,")[1].split("'")[0]
    assert mpimg.imread(io.BytesIO(base64.b64decode(first)), format="png").ndim == 3


def test_verilog_manifest(run_result, tmp_path):
    out = write_report(run_result, tmp_path / "rep")
    manifest = json.loads((out / "verilog" / "manifest.json").read_text())
    rows = manifest["layers"]
    assert [r["layer"] for r in rows] == [r["name"] for r in run_result.layers]
    for r in rows:
        assert r["multiplier"] == run_result.assignment[r["layer"]]
        assert r["macs"] > 0 and r["energy_per_op_pj"] > 0 and r["operand_format"] == "u4xs4"
        if r["verilog"] is not None:
            text = (out / "verilog" / r["verilog"]).read_text()
            assert f"module {r['multiplier']}" in text
    with open(out / "verilog" / "manifest.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)


def test_manifest_without_verilog(run_result, tmp_path):
    from dataclasses import replace

    layers = [dict(r, multiplier="u4xs4_lsb0") for r in run_result.layers]
    out = write_report(replace(run_result, layers=layers), tmp_path / "rep")
    manifest = json.loads((out / "verilog" / "manifest.json").read_text())
    assert manifest["multipliers"] == {"u4xs4_lsb0": None} and "u4xs4_lsb0" in manifest["note"]
    assert not list((out / "verilog").glob("*.v"))


def test_existing_folder_and_force(run_result, tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"exists \(use --force\)"):
        write_report(run_result, out)
    assert (out / "keep.txt").read_text() == "mine"
    write_report(run_result, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_failure_leaves_nothing(run_result, tmp_path, monkeypatch):
    import fames.report as report

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_html", boom)
    with pytest.raises(RuntimeError):
        write_report(run_result, tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "a").write_text("x")
    with pytest.raises(RuntimeError):
        write_report(run_result, old, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"] and (old / "a").read_text() == "x"


def test_pipeline_result(run_result):
    r = run_result
    assert set(r.assignment) == {"0", "2", "5"}
    assert r.accuracy_quantized > 70 and 0 <= r.energy.reduction_pct < 100
    assert r.loss_points and all({"estimated_dl", "measured_dl"} <= set(p) for p in r.loss_points)
    assert {"selection", "test_evaluation", "loss_check"} <= set(r.timings)
