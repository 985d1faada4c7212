"""Mean-error compensation: tap histograms, channel mean errors, compensated estimates, emulator offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_counting import SENTINEL, _codes_unfold, _error_emulator, _setup

from fames.emulation import approximate_
from fames.multipliers.appmul import AppMul
from fames.multipliers.library import Library
from fames.quant.layers import QConv2d
from fames.sensitivity.compensation import OffsetTable
from fames.sensitivity.counting import counting_matrices
from fames.sensitivity.estimators import estimate_layer

KINDS = ["plain", "stride_groups", "depthwise", "linear", "linear3d"]


def _table(fmt, seed: int = 0, bias: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-3, 4, size=fmt.shape).astype(np.float64) + bias


def _biased(fmt, table: np.ndarray) -> AppMul:
    """A multiplier whose error table is `table`."""
    return AppMul("biased", fmt, AppMul.exact(fmt).table + table.astype(np.int64))


def _measured_mean_error(model, x, table: np.ndarray, pad_taps: bool) -> np.ndarray:
    """Per output channel, mean over samples and positions of sum_k E(x_k, w_k), product by product."""
    layer = model.layer
    fmt = layer.operand_format
    a_min, w_min = fmt.a_range[0], fmt.w_range[0]
    with torch.no_grad():
        x_int, _ = layer.input_codes(x)
        w_int, _ = layer.weight_codes()
    w_flat = w_int.reshape(w_int.shape[0], -1).long().numpy() - w_min
    if isinstance(layer, QConv2d):
        cols = _codes_unfold(layer, x_int.double(), pad_taps).long().numpy()  # (N, C*k, L)
        k = cols.shape[1] // layer.groups
        per_group = layer.out_channels // layer.groups
        out = []
        for o in range(layer.out_channels):
            u = cols[:, (o // per_group) * k : (o // per_group + 1) * k, :]
            v = np.broadcast_to(w_flat[o][None, :, None], u.shape)
            keep = u != SENTINEL
            err = np.where(keep, table[np.where(keep, u - a_min, 0), v], 0.0)
            out.append(err.sum(axis=1).mean())
        return np.array(out)
    xi = x_int.reshape(-1, layer.in_features).long().numpy() - a_min  # (rows, in)
    return np.array([table[xi, w_flat[o][None, :]].sum(axis=1).mean() for o in range(layer.out_features)])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pad_taps", [True, False])
def test_channel_mean_error_matches_brute_force(kind: str, pad_taps: bool) -> None:
    model, x, y = _setup(kind, seed=1)
    table = _table(model.layer.operand_format, seed=2)
    stats = counting_matrices(model, (x, y), groups=3, pad_taps=pad_taps, batch_size=4).layers["layer"].channel
    predicted = stats.mean_errors(table[None])[0]
    np.testing.assert_allclose(predicted, _measured_mean_error(model, x, table, pad_taps), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(stats.offsets(table[None])[0], np.round(predicted))


def test_tap_histogram_counts_every_tap_read() -> None:
    model, x, y = _setup("stride_groups", seed=4)
    layer = model.layer
    stats = counting_matrices(model, (x, y), groups=2).layers["layer"].channel
    with torch.no_grad():
        x_int, _ = layer.input_codes(x)
    cols = _codes_unfold(layer, x_int.double(), True).long() - layer.operand_format.a_range[0]  # (N, K, L)
    n_a = layer.operand_format.shape[0]
    brute = np.stack([np.bincount(cols[:, k].reshape(-1).numpy(), minlength=n_a) for k in range(cols.shape[1])])
    np.testing.assert_array_equal(stats.taps, brute)
    assert stats.positions == cols.shape[0] * cols.shape[2]


def _per_sample_change(model, x, y, table: np.ndarray, offset: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """d l_n / d eps of every sample's loss for accumulator error eps * (sum_k E - offset), central difference."""
    base = _error_emulator(table, 1.0)
    conv = isinstance(model.layer, QConv2d)
    off = torch.from_numpy(offset).double().reshape((1, -1, 1, 1) if conv else (-1,))

    def losses(e: float) -> np.ndarray:
        def emulate(layer, x_int, w_int):
            exact = layer.integer_op(x_int, w_int)
            return exact + e * (base(layer, x_int, w_int) - exact - off)

        model.layer.emulator = emulate
        with torch.no_grad():
            out = F.cross_entropy(model(x), y, reduction="none").numpy()
        model.layer.emulator = None
        return out

    return (losses(eps) - losses(-eps)) / (2 * eps)


@pytest.mark.parametrize("kind", KINDS)
def test_compensated_estimates_match_finite_differences(kind: str) -> None:
    model, x, y = _setup(kind, seed=3)
    fmt = model.layer.operand_format
    table = _table(fmt, seed=5)
    lc = counting_matrices(model, (x, y), groups=len(x)).layers["layer"]  # one sample per group: exact t_n
    mul = _biased(fmt, table)
    offset = lc.channel.offsets(table[None])[0]
    assert np.any(offset != 0)
    t = _per_sample_change(model, x, y, table, offset)
    first = estimate_layer(lc, [mul], "first_order", compensate=True)["biased"]
    mean_abs = estimate_layer(lc, [mul], "abs", compensate=True)["biased"]
    assert first == pytest.approx(t.mean(), rel=1e-5, abs=1e-9)
    assert mean_abs == pytest.approx(np.abs(t).mean(), rel=1e-5, abs=1e-9)
    t_plain = _per_sample_change(model, x, y, table, np.zeros_like(offset))
    assert estimate_layer(lc, [mul], "abs")["biased"] == pytest.approx(np.abs(t_plain).mean(), rel=1e-5)


@pytest.mark.parametrize("kind", ["stride_groups", "linear3d"])
def test_emulator_offsets_shift_the_accumulator(kind: str) -> None:
    model, x, y = _setup(kind, seed=6)
    fmt = model.layer.operand_format
    mul = _biased(fmt, _table(fmt, seed=7))
    lib = Library([AppMul.exact(fmt), mul])
    lc = counting_matrices(model, (x, y), groups=2).layers["layer"]
    offsets = OffsetTable({"layer": lc.channel}, lib).for_assignment({"layer": "biased"})
    assert offsets and len(offsets["layer"]) == model.layer.weight.shape[0]
    with torch.no_grad():
        x_int, s_a = model.layer.input_codes(x)
        _, s_w = model.layer.weight_codes()
        approximate_(model, {"layer": "biased"}, lib)
        plain = model.layer(x)
        approximate_(model, {"layer": "biased"}, lib, offsets=offsets)
        shifted = model.layer(x)
    shape = (1, -1, 1, 1) if isinstance(model.layer, QConv2d) else (-1,)
    expected = plain - (s_a * s_w * torch.tensor(offsets["layer"], dtype=torch.float64)).reshape(shape)
    torch.testing.assert_close(shifted, expected)
    # the mean accumulator error left after compensation is below one unit per channel
    with torch.no_grad():
        w_int, _ = model.layer.weight_codes()
        residual = (model.layer.emulator(model.layer, x_int, w_int) - model.layer.integer_op(x_int, w_int))
    dims = (0, 2, 3) if residual.dim() == 4 else tuple(range(residual.dim() - 1))
    assert residual.mean(dim=dims).abs().max() <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="offsets need"):
        approximate_(model, {"layer": "biased"}, lib, offsets={"layer": [1.0]})
    with pytest.raises(ValueError, match="does not name"):
        approximate_(model, {}, lib, offsets={"layer": offsets["layer"]})
    approximate_(model, {}, lib)
