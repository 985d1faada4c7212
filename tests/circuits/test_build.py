import numpy as np
import pytest

from fames.circuits import build
from fames.circuits.generators import exact, truncated
from fames.multipliers.formats import OperandFormat
from fames.multipliers.library import load_library

pytestmark = pytest.mark.eda


@pytest.fixture
def few_designs(monkeypatch):
    def designs(fmt):
        return [exact(fmt), truncated(fmt, 1), truncated(fmt, 2), truncated(fmt, 3)]

    monkeypatch.setattr(build, "candidate_designs", designs)


def test_build_small_library(tmp_path, few_designs):
    seen = []
    out = tmp_path / "lib.npz"
    lib = build.build_library(
        ["u3xs3"], out, jobs=1, als_n_max=2, progress=lambda d, t, n: seen.append((d, t))
    )
    assert seen and seen[-1][0] == seen[-1][1]
    loaded = load_library(out)
    fmt = OperandFormat.parse("u3xs3")
    ex = loaded.exact(fmt)
    assert ex.hardware.energy_pj > 0 and np.array_equal(ex.table, fmt.exact_table())
    assert [m.name for m in loaded] == [m.name for m in lib]
    approx = [m for m in loaded if not m.is_exact]
    assert approx and all(m.energy_pj < ex.energy_pj for m in approx)
    again = tmp_path / "again.npz"  # deterministic: same inputs, same bytes (cached this time)
    build.build_library(["u3xs3"], again, jobs=2, als_n_max=2)
    assert again.read_bytes() == out.read_bytes()


def test_build_refuses_wrong_design(tmp_path, monkeypatch):
    def designs(fmt):
        d = truncated(fmt, 2)
        return [exact(fmt), type(d)(d.name, d.fmt, d.family, d.params, d.verilog, d.top, fmt.exact_table())]

    monkeypatch.setattr(build, "candidate_designs", designs)
    with pytest.raises(build.FamesError, match="trunc_k2"):
        build.build_library(["u2xu2"], tmp_path / "x.npz", jobs=1, als=False)
