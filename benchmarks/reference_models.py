"""Reference models: accuracy, bits and build time of the shipped mixed-precision checkpoints.

Command (after `bash scripts/build_reference_models.sh`, which ends by running it):

    python benchmarks/reference_models.py

Reads `src/fames/assets/models/{lenet,vgg,resnet}_mp.safetensors`, their float parents in `models/` and
the bit-allocation files `models/<name>_bits.json`; evaluates float and quantized test accuracy afresh;
writes `benchmarks/results/reference_models.json` and `.md` (wall times come from the checkpoints'
headers, measured by `fames train` on this 2-core machine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "src" / "fames" / "assets" / "models"
MODELS_DIR = ROOT / "models"
RESULTS = ROOT / "benchmarks" / "results"
BUILD_SCRIPT = ROOT / "scripts" / "build_reference_models.sh"


def rebuild_commands(name: str) -> list[str]:
    """The `fames` commands of `build_<name>()` in scripts/build_reference_models.sh."""
    lines, inside, current = [], False, ""
    for raw in BUILD_SCRIPT.read_text().splitlines():
        line = raw.strip()
        if line.startswith(f"build_{name}()"):
            inside = True
            continue
        if inside and line == "}":
            break
        if inside:
            current += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                text = current.replace("$FAMES", "fames").replace("$ASSETS", str(ASSETS.relative_to(ROOT)))
                lines.append(" ".join(text.split()))
                current = ""
    return ["OMP_NUM_THREADS=1 " + cmd for cmd in lines]


def main() -> int:
    from fames.checkpoint import load_checkpoint, read_header
    from fames.data import load_dataset
    from fames.train import evaluate

    records, rows = [], []
    data = load_dataset("fashion-mnist")
    for name in ("lenet", "vgg", "resnet"):
        mp_path, float_path = ASSETS / f"{name}_mp.safetensors", MODELS_DIR / f"{name}_float.safetensors"
        if not mp_path.is_file() or not float_path.is_file():
            print(f"skipping {name}: {mp_path.name} or {float_path.name} missing", file=sys.stderr)
            continue
        float_model, float_header = load_checkpoint(float_path)
        model, header = load_checkpoint(mp_path)
        float_acc, _ = evaluate(float_model, data.test)
        q_acc, q_loss = evaluate(model, data.test)
        bits = read_header(mp_path)["bits"]
        params = {n: m.weight.numel() for n, m in model.named_modules() if n in bits}
        avg_bits = sum(params[n] * b["w"] for n, b in bits.items()) / sum(params.values())
        n2 = sum(b["w"] == 2 for b in bits.values())
        rec = {
            "model": name, "path": str(mp_path.relative_to(ROOT)), "float_path": str(float_path.relative_to(ROOT)),
            "bits": bits, "layers": len(bits), "layers_2bit_weights": n2,
            "avg_weight_bits": avg_bits, "float_test_accuracy": float_acc, "quantized_test_accuracy": q_acc,
            "accuracy_drop": float_acc - q_acc, "quantized_test_loss": q_loss,
            "float_train_seconds": float_header.get("train_seconds"), "qat_seconds": header.get("train_seconds"),
            "float_epochs": float_header["train_config"]["epochs"], "qat_epochs": header["train_config"]["epochs"],
            "command": rebuild_commands(name), "command_as_run": [float_header["command"], header["command"]],
        }
        records.append(rec)
        rows.append(f"| {name} | {len(bits)} | {n2} | {avg_bits:.2f} | {float_acc:.2f} | {q_acc:.2f} | "
                    f"{float_acc - q_acc:+.2f} | {_minutes(rec['float_train_seconds'])} | "
                    f"{_minutes(rec['qat_seconds'])} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reference_models.json").write_text(json.dumps({"benchmark": "reference_models", "models": records},
                                                              indent=2))
    table = "\n".join([
        "| model | layers | 2-bit weight layers | avg weight bits | float test % | quantized test % | drop (pt) "
        "| float training (min) | QAT (min) |",
        "|---|---|---|---|---|---|---|---|---|", *rows])
    (RESULTS / "reference_models.md").write_text(table + "\n")
    print(table)
    return 0


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"


if __name__ == "__main__":
    sys.exit(main())
