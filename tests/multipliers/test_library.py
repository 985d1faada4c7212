"""Library container, Pareto sets, file format and LUT import."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from fames.multipliers import library as libmod
from fames.multipliers.appmul import AppMul, HardwareFigures
from fames.multipliers.formats import OperandFormat
from fames.multipliers.library import Library, builtin_library, load_library, save_library
from fames.multipliers.lut_io import read_lut

U3 = OperandFormat.parse("u3xu3")
S2 = OperandFormat.parse("u2xs2")


def _hw(energy: float) -> HardwareFigures:
    return HardwareFigures(
        area_um2=10 * energy, delay_ns=1.0, power_uw=energy * 100, energy_pj=energy, clock_ns=10.0
    )


def _lib(n: int = 12, seed: int = 0) -> Library:
    rng = np.random.default_rng(seed)
    lib = Library([AppMul.exact(U3, hardware=_hw(1.0), verilog="module x; endmodule\n"), AppMul.exact(S2)])
    for k in range(n):
        err = rng.integers(-3, 4, size=U3.shape) * (rng.random(U3.shape) < 0.3)
        energy = float(rng.choice([0.2, 0.4, 0.6, 0.8]))
        lib.add(
            AppMul(
                f"u3xu3_m{k}",
                U3,
                U3.exact_table() + err,
                _hw(energy),
                family="rand",
                params={"k": k, "t": [1, 2]},
            )
        )
    lib.add(AppMul("u3xu3_uncharacterised", U3, U3.exact_table() + 1, family="rand"))
    return lib


def test_container_basics() -> None:
    lib = _lib()
    assert len(lib) == 15 and "u3xu3_m3" in lib and lib.get("u3xu3_m3") in lib
    assert [m.name for m in lib][:2] == ["u3xu3_exact", "u2xs2_exact"]
    assert lib.formats() == [U3, S2]
    assert len(lib.filter(fmt="u2xs2")) == 1 and len(lib.filter(family="rand")) == 13
    assert lib.exact("u3xu3").name == "u3xu3_exact"
    with pytest.raises(ValueError, match="already"):
        lib.add(AppMul.exact(S2))
    with pytest.raises(ValueError, match="u3xu3_m3"):
        lib.get("u3xu3_m33x")
    with pytest.raises(ValueError, match="no exact multiplier for format s4xs4"):
        lib.exact(OperandFormat.parse("s4xs4"))
    with pytest.raises(TypeError):
        lib.add("not a multiplier")  # type: ignore[arg-type]


def _brute_front(lib: Library, fmt: OperandFormat, metric: str) -> set[str]:
    pts = [
        (m.energy_pj, getattr(m.metrics(), metric), k, m.name)
        for k, m in enumerate(lib)
        if m.fmt == fmt and m.hardware
    ]
    front = set()
    for e, v, k, name in pts:
        dominated = any(
            (e2 <= e and v2 <= v and (e2 < e or v2 < v)) or (e2 == e and v2 == v and k2 < k)
            for e2, v2, k2, _ in pts
        )
        if not dominated:
            front.add(name)
    return front


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["mred", "wce", "error_rate"])
def test_pareto_matches_brute_force(seed: int, metric: str) -> None:
    lib = _lib(20, seed)
    front = lib.pareto(U3, metric)
    assert {m.name for m in front} == _brute_front(lib, U3, metric)
    energies = [m.energy_pj for m in front]
    assert energies == sorted(energies)
    pruned = lib.prune_pareto(metric)
    assert {m.name for m in pruned} == _brute_front(lib, U3, metric) | {"u3xu3_exact", "u2xs2_exact"}
    with pytest.raises(ValueError, match="unknown metric"):
        lib.pareto(U3, "accuracy")


def test_save_load_round_trip(tmp_path) -> None:
    lib = _lib()
    for k, big in enumerate((-1000, 70000, 2**40)):  # int16, int32, int64 error tables
        lib.add(AppMul(f"u3xu3_big{k}", U3, U3.exact_table() + big * (U3.exact_table() % 3)))
    path = save_library(lib, tmp_path / "sub" / "lib.npz")
    back = load_library(path)
    assert [m.name for m in back] == [m.name for m in lib]
    for a, b in zip(lib, back, strict=True):
        assert np.array_equal(a.table, b.table) and b.table.dtype == np.int64
        assert (a.fmt, a.family, a.params, a.hardware, a.verilog) == (
            b.fmt,
            b.family,
            b.params,
            b.hardware,
            b.verilog,
        )
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("metadata.json"))
        assert meta["format_version"] == 1
        assert meta["entries"][0]["error_dtype"] == "int8"
        assert not np.load(io.BytesIO(zf.read("e00000.npy"))).any()
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_save_is_byte_deterministic(tmp_path) -> None:
    a = save_library(_lib(), tmp_path / "a.npz").read_bytes()
    b = save_library(_lib(), tmp_path / "b.npz").read_bytes()
    c = save_library(load_library(tmp_path / "a.npz"), tmp_path / "c.npz").read_bytes()
    assert a == b == c


def test_file_is_compact(tmp_path) -> None:
    fmt = OperandFormat.parse("s8xs8")
    exact = fmt.exact_table()
    lib = Library([AppMul.exact(fmt)])
    for k in range(300):
        lib.add(
            AppMul(
                f"s8xs8_t{k}",
                fmt,
                ((exact >> (k % 9)) << (k % 9)) + (k // 9) % 3,
                verilog="assign y = a;\n" * 50,
            )
        )
    size = save_library(lib, tmp_path / "big.npz").stat().st_size
    assert size < 4_000_000


def test_save_requires_exact_per_format(tmp_path) -> None:
    lib = Library([AppMul("u2xs2_bad", S2, S2.exact_table() + 1)])
    with pytest.raises(ValueError, match="no exact multiplier"):
        save_library(lib, tmp_path / "x.npz")


def test_corrupt_and_wrong_version_files(tmp_path) -> None:
    good = save_library(_lib(), tmp_path / "good.npz").read_bytes()
    cases = {
        "garbage.npz": b"this is not a zip file",
        "truncated.npz": good[: len(good) // 2],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"format_version": 2, "entries": []}))
    cases["v2.npz"] = buf.getvalue()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="cannot read multiplier library") as info:
            load_library(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="format_version 2"):
        load_library(tmp_path / "v2.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load_library(tmp_path / "missing.npz")


def test_builtin_library_missing_says_how_to_build(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(libmod, "builtin_library_path", lambda: tmp_path / "none.npz")
    with pytest.raises(FileNotFoundError, match="fames lib build"):
        builtin_library()
    save_library(_lib(), tmp_path / "none.npz")
    assert len(builtin_library()) == 15


def test_read_lut_csv_and_npy(tmp_path) -> None:
    table = S2.exact_table()
    np.savetxt(tmp_path / "t.csv", table, delimiter=",", fmt="%d", header="u2xs2")
    np.save(tmp_path / "t.npy", table.astype(np.int16))
    np.save(tmp_path / "f.npy", table.astype(np.float32))
    for name in ("t.csv", "t.npy", "f.npy"):
        got = read_lut(tmp_path / name, S2)
        assert got.dtype == np.int64 and np.array_equal(got, table)


def test_read_lut_errors(tmp_path) -> None:
    np.save(tmp_path / "shape.npy", np.zeros((4, 3), dtype=np.int64))
    np.save(tmp_path / "frac.npy", np.full((4, 4), 0.5))
    np.save(tmp_path / "bool.npy", np.zeros((4, 4), dtype=bool))
    (tmp_path / "text.csv").write_text("1,2,x,4\n" * 4)
    (tmp_path / "t.xlsx").write_text("")
    for name, pattern in [
        ("shape.npy", r"shape \(4, 3\); expected shape \(4, 4\)"),
        ("frac.npy", "non-integer"),
        ("bool.npy", "dtype bool"),
        ("text.csv", r"expected shape \(4, 4\)"),
        ("t.xlsx", "unsupported"),
        ("missing.csv", "cannot read LUT"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            read_lut(tmp_path / name, S2)
