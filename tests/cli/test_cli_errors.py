"""Bad input at the CLI: a one-line message and a non-zero exit code, never a traceback."""

import subprocess
import sys

import pytest
import torch

from fames.checkpoint import save_checkpoint
from fames.cli.main import main
from fames.models import build_model


@pytest.fixture
def float_ckpt(tmp_path):
    path = tmp_path / "f.safetensors"
    save_checkpoint(build_model("lenet", image_size=8), path,
                    {"model": "lenet", "model_kwargs": {"image_size": 8}, "dataset": "digits"})
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("bits,expect", [("1", "outside the supported range"), ("9", "outside the supported range"),
                                         ("x", "must be an integer"), ("conv9=4", "unknown layer 'conv9'")])
def test_bad_bits(tmp_path, float_ckpt, capsys, bits, expect):
    bits_arg = bits if "=" in bits else f'{{"*": "{bits}"}}' if bits != "x" else '{"*": "x"}'
    code, err = run(["train", "--from", float_ckpt, "--bits", bits_arg, "--dataset", "digits", "--epochs", "1",
                     "-o", tmp_path / "q.safetensors"], capsys)
    assert code == 2 and expect in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "q.safetensors").exists()


def test_missing_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAMES_FASHION_MNIST", str(tmp_path / "nowhere"))
    code, err = run(["train", "--model", "lenet", "-o", tmp_path / "m.safetensors"], capsys)
    assert code == 2 and "dataset-fashion-mnist" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("damage", ["truncate", "junk", "missing"])
def test_bad_checkpoint(tmp_path, float_ckpt, capsys, damage):
    bad = tmp_path / "bad.safetensors"
    if damage == "truncate":
        bad.write_bytes(float_ckpt.read_bytes()[:300])
    elif damage == "junk":
        bad.write_bytes(b"\x00" * 64)
    code, err = run(["eval", bad, "--split", "val"], capsys)
    assert code == 2 and str(bad) in err and len(err.splitlines()) == 1


def test_bad_candidates(float_ckpt, capsys):
    code, err = run(["bits", float_ckpt, "--avg-bits", "3", "--candidates", "1,2"], capsys)
    assert code == 2 and "outside the supported range" in err


def test_console_script_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "from fames.cli.main import main; raise SystemExit(main())",
                           "eval", str(tmp_path / "none.safetensors")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("fames: error:") and "Traceback" not in proc.stderr


def test_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "nope"])
    assert exc.value.code == 2


@pytest.mark.parametrize("device,expect", [("gpu", "unknown device 'gpu'"),
                                           ("cuda" if not torch.cuda.is_available() else "cuda:99", "cuda")])
def test_bad_device_before_any_work(tmp_path, float_ckpt, capsys, device, expect):
    # the float checkpoint would fail later ("quantize it first"): the device is checked before loading it
    code, err = run(["select", float_ckpt, "--device", device], capsys)
    assert code == 2 and expect in err and len(err.splitlines()) == 1 and "Traceback" not in err
