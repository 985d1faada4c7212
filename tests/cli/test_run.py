"""`fames run` end to end on a user's model file (tests/cli/user_model.py) with its own weights.

Error paths, each end to end through `fames.cli.main.main`: one line on stderr, the documented exit code
(2 = bad usage or input file), no traceback, nothing written. An unknown multiplier is tested through
``--assignment FILE`` (evaluate a given assignment instead of selecting), which `fames run` and
`fames select` accept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fames.circuits.generators.families import exact, truncated
from fames.cli.main import main
from fames.data import load_dataset
from fames.emulation.api import approximate_, load_assignment, load_offsets, offsets_path
from fames.models.user import load_user_model
from fames.multipliers import AppMul, HardwareFigures, OperandFormat
from fames.multipliers.library import Library, load_library, save_library
from fames.quant import quantize_
from fames.train import evaluate

USER = Path(__file__).with_name("user_model.py")


def _library() -> Library:
    fmt = OperandFormat.parse("u4xs4")
    hw = lambda e: HardwareFigures(1.0, 1.0, e * 100, e, clock_ns=10.0)  # noqa: E731
    lib = Library([exact(fmt).to_appmul(hw(0.16))])
    for k in (1, 2, 3, 4):
        lib.add(truncated(fmt, k).to_appmul(hw(0.16 * (1 - 0.12 * k))))
    lib.add(AppMul("u4xs4_lsb0", fmt, (fmt.exact_table() >> 1) << 1, hw(0.15), "custom"))
    return lib


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Trained weights of SmallNet (state_dict .pt) and a small library file."""
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = load_user_model(f"{USER}:SmallNet", None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(4):
        perm = torch.randperm(len(data.train), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(data.train.x[idx]), data.train.y[idx]).backward()
            opt.step()
    torch.save(model.state_dict(), root / "small.pt")
    save_library(_library(), root / "lib.npz")
    return {"weights": root / "small.pt", "library": root / "lib.npz", "data": data}


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip()


def _base(inputs, out, *extra):
    return ["run", "--model", f"{USER}:SmallNet", "--weights", inputs["weights"], "--dataset", "digits",
            "--bits", "*=4", "--library", inputs["library"], "--calibration", "256", "--out", out, "-q",
            *extra]


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "report"
    code = main([str(a) for a in _base(inputs, out, "--max-accuracy-drop", "3", "--json")])
    assert code == 0
    return out


def test_run_user_model_reloads(finished, inputs):
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["accuracy_float"] > 85 and summary["accuracy_quantized"] > 80
    assert set(summary["assignment"]) == {"conv1", "conv2", "fc"}
    assert 0 < summary["energy_reduction"] < 100
    assert summary["mac_energy_reduction"] < summary["energy_reduction"]
    assert summary["inputs"]["hashes"].keys() >= {"model_file", "weights", "library", "data"}
    for name in ("report.html", "report.md", "assignment.json", "verilog/manifest.csv"):
        assert (finished / name).is_file()
    # a fresh user model, quantized the same way, reloads the assignment to the reported accuracy
    data = inputs["data"]
    model = load_user_model(f"{USER}:SmallNet", inputs["weights"])
    quantize_(model, {"*": 4}, calibration=data.train.subset(256, seed=0).x)
    offsets_file = offsets_path(finished / "assignment.json")
    offsets = load_offsets(offsets_file) if offsets_file.is_file() else None
    assert (offsets or {}) == summary["accumulator_offsets"]
    approximate_(model, load_assignment(finished / "assignment.json"), load_library(inputs["library"]),
                 offsets=offsets)
    assert evaluate(model, data.test)[0] == pytest.approx(summary["accuracy_approximate"])


def test_factory_npz_and_given_assignment(finished, inputs, tmp_path, capsys):
    data = inputs["data"]
    train_x = torch.cat([data.train.x, data.val.x])[:, 0].numpy()
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=(train_x * 255).round().astype(np.uint8),
             y_train=torch.cat([data.train.y, data.val.y]).numpy(),
             x_test=(data.test.x[:, 0].numpy() * 255).round().astype(np.uint8), y_test=data.test.y.numpy())
    argv = ["run", "--model", f"{USER}:make_net", "--weights", inputs["weights"], "--data", npz, "--bits",
            "*=4", "--library", inputs["library"], "--calibration", "128", "--assignment",
            finished / "assignment.json", "--out", tmp_path / "given"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert "energy reduction" in out and "report:" in out
    summary = json.loads((tmp_path / "given" / "summary.json").read_text())
    assert summary["config"]["mode"] == "given" and summary["pareto"] == []
    assert summary["assignment"] == load_assignment(finished / "assignment.json")
    offsets_file = offsets_path(finished / "assignment.json")
    assert summary["accumulator_offsets"] == (load_offsets(offsets_file) if offsets_file.is_file() else {})


def _bad_files(tmp_path: Path, inputs) -> dict[str, Path]:
    (tmp_path / "bad.py").write_text("import torch\nclass Net(torch.nn.Module:\n    pass\n")
    other = torch.nn.Sequential(torch.nn.Linear(64, 10))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    (tmp_path / "unknown.json").write_text(json.dumps({"conv1": "u4xs4_nope", "fc": "u4xs4_exact"}))
    (tmp_path / "lib.npz").write_bytes(b"not a zip file")
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("mine")
    return {"bad": tmp_path / "bad.py", "other": tmp_path / "other.pt", "unknown": tmp_path / "unknown.json",
            "lib": tmp_path / "lib.npz"}


CASES = {
    "missing model file": (["--model", "nowhere/net.py:Net"], "model file nowhere/net.py not found"),
    "malformed model file": (["--model", "{bad}:Net"], "line 2"),
    "class not found": (["--model", f"{USER}:Nope"], "has no class or function 'Nope'; it defines SmallNet"),
    "weights not matching": (["--weights", "{other}"], "do not match SmallNet: missing conv1.weight"),
    "unknown multiplier": (["--assignment", "{unknown}"], "no multiplier named 'u4xs4_nope'"),
    "unreadable library": (["--library", "{lib}"], "cannot read multiplier library"),
    "existing output folder": (["--out", "{exists}"], "exists (use --force)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_error_paths(case, inputs, tmp_path, capsys):
    files = _bad_files(tmp_path, inputs)
    files["exists"] = tmp_path / "exists"
    extra, expect = CASES[case]
    extra = [e.format(**{k: str(v) for k, v in files.items()}) for e in extra]
    out = tmp_path / "out"
    argv = _base(inputs, out)
    for i in range(0, len(extra), 2):  # later options override the base ones
        argv += extra[i : i + 2]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    assert expect in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    assert (tmp_path / "exists" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("budget", ["-1", "150"])
def test_budget_out_of_range(budget, inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in _base(inputs, tmp_path / "out", "--max-accuracy-drop", budget)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "between 0 and 100" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_subprocess_exit_code_and_no_traceback(inputs, tmp_path):
    cmd = "import sys; from fames.cli.main import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", cmd, "run", "--model", "nowhere.py:Net",
                           "--bits", "*=4", "--dataset", "digits", "--library", str(inputs["library"]),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "fames: error: model file nowhere.py not found"
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def quantized_ckpt(inputs, tmp_path_factory) -> Path:
    """A 4-bit LeNet checkpoint on digits, briefly trained."""
    from fames.checkpoint import save_checkpoint
    from fames.models import build_model

    data = inputs["data"]
    torch.manual_seed(0)
    model = build_model("lenet", image_size=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        for x, y in data.train.batches(64):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    quantize_(model.eval(), {"*": 4}, calibration=data.train.subset(256, seed=0).x)
    ckpt = tmp_path_factory.mktemp("quantized") / "q.safetensors"
    save_checkpoint(model, ckpt, {"model": "lenet", "model_kwargs": {"image_size": 8}, "dataset": "digits"})
    return ckpt


def test_select_prints_selection(inputs, quantized_ckpt, tmp_path, capsys):
    ckpt = quantized_ckpt
    code, out, err = _run(["select", ckpt, "--library", inputs["library"], "--calibration", "128",
                           "--max-accuracy-drop", "3", "--json", "-o", tmp_path / "a.json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["assignment"] == load_assignment(tmp_path / "a.json")
    assert {"energy_reduction", "accuracy_quantized", "accuracy_approximate", "accuracy_drop",
            "selection_seconds"} <= set(summary)
    assert summary["accuracy_float"] is None
    offsets_file = offsets_path(tmp_path / "a.json")
    assert summary["accumulator_offsets"] == (load_offsets(offsets_file) if offsets_file.is_file() else {})
    # the saved assignment (with its offsets) evaluates to the selection's test accuracy
    code, out, err = _run(["select", ckpt, "--library", inputs["library"], "--calibration", "128",
                           "--json", "--assignment", tmp_path / "a.json"], capsys)
    assert code == 0, err
    assert json.loads(out)["accuracy_approximate"] == pytest.approx(summary["accuracy_approximate"])
    offsets_file.write_text("[1]")
    code, out, err = _run(["select", ckpt, "--library", inputs["library"], "--assignment", tmp_path / "a.json"],
                          capsys)
    assert code == 2 and "offsets file" in err and "Traceback" not in err


@pytest.mark.parametrize("passes,bisection,anchors", [(1, "index", True), (3, "aimed", False)])
def test_select_search_options_reach_the_search(inputs, quantized_ckpt, passes, bisection, anchors, capsys,
                                                monkeypatch):
    import fames.pipeline

    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return select(*args, **kwargs)

    select = fames.pipeline.select
    monkeypatch.setattr(fames.pipeline, "select", spy)
    code, out, err = _run(["select", quantized_ckpt, "--library", inputs["library"], "--calibration", "128",
                           "--max-accuracy-drop", "3", "--passes", passes, "--bisection", bisection, "--json",
                           *([] if anchors else ["--no-anchors"])], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert seen["max_evaluations"] == passes and seen["bisection"] == bisection and seen["anchor"] is anchors
    assert summary["config"]["max_evaluations"] == passes and summary["config"]["bisection"] == bisection
    assert summary["config"]["anchor"] is anchors and bool(summary["anchors"]) is anchors
    assert all(0 < a["factor"] <= 1 for a in summary["anchors"])
    assert 0 < summary["validation"]["evaluation_passes"] <= passes + 1e-9


@pytest.mark.parametrize("value,expect", [("0", "at least 1"), ("two", "whole number")])
def test_select_bad_passes(inputs, quantized_ckpt, value, expect, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["select", str(quantized_ckpt), "--passes", value])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and expect in err and "Traceback" not in err


def test_auto_bits_and_qat(inputs, tmp_path, capsys):
    lib = _library()
    hw = HardwareFigures(1.0, 1.0, 10.0, 0.1, clock_ns=10.0)
    for name in ("u4xs2", "u4xs3", "u8xs8", "u4xs8"):
        lib.add(AppMul.exact(OperandFormat.parse(name), hardware=hw))
    save_library(lib, tmp_path / "lib.npz")
    argv = ["run", "--model", f"{USER}:SmallNet", "--weights", inputs["weights"], "--dataset", "digits",
            "--auto-bits", "--avg-bits", "4", "--qat-epochs", "1", "--library", tmp_path / "lib.npz",
            "--calibration", "128", "--out", tmp_path / "auto", "--json", "-q"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert {"bit_allocation", "quantization", "qat"} <= set(summary["timings"])
    bits = [row["w_bits"] for row in summary["layers"]]
    assert all(b in (2, 3, 4, 8) for b in bits)
