"""`fames train` / `fames bits` / `fames eval` on the tiny digits set: determinism and resumption."""

import json

import torch
from safetensors.torch import load_file

from fames.cli.main import main


def test_float_train_deterministic_and_resumable(tmp_path, capsys):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["train", "--model", "lenet", "--dataset", "digits", "--seed", "3", "--lr", "0.1"]
    assert main([*common, "--epochs", "3", "-o", str(a)]) == 0
    # interrupted run: simulate by training 3 epochs with a state file that already holds epoch 1
    assert main([*common, "--epochs", "3", "-o", str(b)]) == 0
    sa, sb = load_file(a), load_file(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    import fames.train as train_mod

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["train", "--model", "lenet", "--dataset", "digits", "--epochs", "3", "--lr", "0.1"]
    assert main([*common, "-o", str(a)]) == 0

    calls = {"n": 0}
    real_evaluate = train_mod.evaluate

    def crash_after_two_epochs(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_mod, "evaluate", crash_after_two_epochs)
    assert main([*common, "-o", str(b)]) == 130
    assert (tmp_path / "b.safetensors.state.pt").exists() and not b.exists()
    monkeypatch.setattr(train_mod, "evaluate", real_evaluate)
    assert main([*common, "-o", str(b), "--resume"]) == 0
    sa, sb = load_file(a), load_file(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bits_then_qat_then_eval(tmp_path, capsys):
    f, q, bits = tmp_path / "f.safetensors", tmp_path / "q.safetensors", tmp_path / "bits.json"
    assert main(["train", "--model", "lenet", "--dataset", "digits", "--epochs", "2", "-o", str(f)]) == 0
    assert main(["bits", str(f), "--avg-bits", "3", "--fix", "conv1=8", "--samples", "2",
                 "--calibration", "64", "-o", str(bits)]) == 0
    config = json.loads(bits.read_text())
    assert config["bits"]["conv1"]["w"] == 8 and config["avg_weight_bits"] <= 3
    assert main(["train", "--from", str(f), "--bits", str(bits), "--dataset", "digits", "--epochs", "1",
                 "-o", str(q)]) == 0
    capsys.readouterr()
    assert main(["eval", str(q), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"accuracy", "loss", "bits"} and out["bits"]["conv1"]["w"] == 8
