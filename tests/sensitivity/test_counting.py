"""Counting matrices vs a brute-force count (unfold + gather, float64) and vs autograd finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fames.quant.layers import QConv2d, QLinear
from fames.sensitivity import counting
from fames.sensitivity.counting import counting_matrices

SENTINEL = -10_000  # code of a skipped padded tap in the brute force


def _codes_unfold(layer: QConv2d, x_int: torch.Tensor, pad_taps: bool) -> torch.Tensor:
    ph, pw = layer.padding
    x = F.pad(x_int, (pw, pw, ph, ph), value=0.0 if pad_taps else float(SENTINEL))
    return F.unfold(x, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (N, C*kh*kw, L)


def brute_force_counts(layer, x: torch.Tensor, g: torch.Tensor, pad_taps: bool = True) -> np.ndarray:
    """Per-sample ``C_n[u, v] = sum_o g_{n,o} s_a s_w[o] #{k : x_{n,k} = u, w_k = v}``, product by product."""
    with torch.no_grad():
        x_int, s_a = layer.input_codes(x)
        w_int, s_w = layer.weight_codes()
    fmt = layer.operand_format
    n_a, n_w = fmt.shape
    a_min, w_min = fmt.a_range[0], fmt.w_range[0]
    n = x.shape[0]
    out = np.zeros((n, n_a, n_w))
    scale = (s_a * s_w).double().numpy()
    if isinstance(layer, QConv2d):
        cols = _codes_unfold(layer, x_int.double(), pad_taps).numpy().astype(np.int64)
        g_np = g.double().reshape(n, layer.out_channels, -1).numpy()
        per_group_out = layer.out_channels // layer.groups
        k = cols.shape[1] // layer.groups
        w_np = w_int.reshape(layer.out_channels, -1).numpy().astype(np.int64)
        for o in range(layer.out_channels):
            grp = o // per_group_out
            u = cols[:, grp * k : (grp + 1) * k, :]  # (N, K, L)
            v = np.broadcast_to(w_np[o][None, :, None], u.shape)
            val = np.broadcast_to((g_np[:, o, :] * scale[o])[:, None, :], u.shape)
            nn_idx = np.broadcast_to(np.arange(n)[:, None, None], u.shape)
            keep = u != SENTINEL
            np.add.at(out, (nn_idx[keep], u[keep] - a_min, v[keep] - w_min), val[keep])
    else:
        xi = x_int.double().reshape(n, -1, layer.in_features).numpy().astype(np.int64)
        g_np = g.double().reshape(n, -1, layer.out_features).numpy()
        w_np = w_int.numpy().astype(np.int64)
        for o in range(layer.out_features):
            v = np.broadcast_to(w_np[o][None, None, :], xi.shape)
            val = np.broadcast_to((g_np[:, :, o] * scale[o])[:, :, None], xi.shape)
            nn_idx = np.broadcast_to(np.arange(n)[:, None, None], xi.shape)
            np.add.at(out, (nn_idx, xi - a_min, v - w_min), val)
    return out


class Net(nn.Module):
    """One quantized layer (the one under test) followed by a float head, or a quantized second layer."""

    def __init__(self, layer: nn.Module, head: nn.Module, act: bool = True) -> None:
        super().__init__()
        self.layer, self.act, self.head = layer, nn.ReLU() if act else nn.Identity(), head

    def forward(self, x):
        return self.head(self.act(self.layer(x)))


def _setup(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "linear":
        layer = QLinear.from_float(nn.Linear(12, 7), w_bits=3, a_bits=2, a_signed=False).double()
        x = torch.rand(9, 12, dtype=torch.float64)
        head = nn.Sequential(nn.Linear(7, 5)).double()
    elif kind == "linear3d":  # tokens: (N, T, in)
        layer = QLinear.from_float(nn.Linear(6, 4), w_bits=2, a_bits=3, a_signed=True).double()
        x = torch.randn(5, 3, 6, dtype=torch.float64)
        head = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).double()
    else:
        cfg = {
            "plain": dict(cin=3, cout=4, k=3, stride=1, padding=1, groups=1, a_signed=False),
            "stride_groups": dict(cin=4, cout=6, k=3, stride=2, padding=2, groups=2, a_signed=True),
            "depthwise": dict(cin=3, cout=3, k=3, stride=1, padding=1, groups=3, a_signed=False),
        }[kind]
        conv = nn.Conv2d(cfg["cin"], cfg["cout"], cfg["k"], stride=cfg["stride"], padding=cfg["padding"],
                         groups=cfg["groups"])
        layer = QConv2d.from_float(conv, w_bits=3, a_bits=3, a_signed=cfg["a_signed"]).double()
        x = torch.randn(7, cfg["cin"], 6, 6, dtype=torch.float64)
        if not cfg["a_signed"]:
            x = x.abs()
        with torch.no_grad():
            out = layer(x)
        head = nn.Sequential(nn.Flatten(), nn.Linear(out[0].numel(), 5)).double()
    with torch.no_grad():
        layer(x)  # initialise the quantizers
    model = Net(layer, head).eval()
    y = torch.randint(0, 5, (x.shape[0],))
    return model, x, y


def _per_sample_grad(model: Net, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    store = {}

    def hook(m, i, o):
        o.retain_grad()
        store["y"] = o

    h = model.layer.register_forward_hook(hook)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    h.remove()
    loss.backward()
    return store["y"].grad.detach()


@pytest.mark.parametrize("kind", ["plain", "stride_groups", "depthwise", "linear", "linear3d"])
@pytest.mark.parametrize("method", ["weight", "activation", "unfold", "auto"])
@pytest.mark.parametrize("pad_taps", [True, False])
def test_counts_match_brute_force(kind: str, method: str, pad_taps: bool) -> None:
    model, x, y = _setup(kind)
    g = _per_sample_grad(model, x, y)
    ref = brute_force_counts(model.layer, x, g, pad_taps)
    res = counting_matrices(model, (x, y), groups=100, method=method, pad_taps=pad_taps, batch_size=4)
    lc = res.layers["layer"]
    np.testing.assert_allclose(lc.groups, ref, atol=1e-10)
    np.testing.assert_allclose(lc.total, ref.sum(0) / len(x), atol=1e-10)
    assert res.n_samples == len(x)
    # micro-batch groups (round-robin) hold the sums of their samples' matrices
    res3 = counting_matrices(model, (x, y), groups=3, method=method, pad_taps=pad_taps, batch_size=4)
    want = np.stack([ref[i::3].sum(0) for i in range(3)])
    np.testing.assert_allclose(res3.layers["layer"].groups, want, atol=1e-10)
    assert res3.layers["layer"].group_sizes.tolist() == np.bincount(np.arange(len(x)) % 3).tolist()


@pytest.mark.parametrize("kind", ["plain", "stride_groups", "depthwise", "linear", "linear3d"])
@pytest.mark.parametrize("ratio", [0.0, 1e9])  # H_k always compacted / always over every row
@pytest.mark.parametrize("pad_taps", [True, False])
def test_unfold_row_layouts(kind: str, ratio: float, pad_taps: bool, monkeypatch) -> None:
    monkeypatch.setattr(counting, "DENSE_ROWS_RATIO", ratio)
    model, x, y = _setup(kind, seed=2)
    ref = brute_force_counts(model.layer, x, _per_sample_grad(model, x, y), pad_taps)
    # 5 groups, batches of 4: no batch holds every group (local rows differ from global ones)
    res = counting_matrices(model, (x, y), groups=5, method="unfold", pad_taps=pad_taps, batch_size=4)
    lc = res.layers["layer"]
    np.testing.assert_allclose(lc.groups, np.stack([ref[i::5].sum(0) for i in range(5)]), atol=1e-10)
    np.testing.assert_allclose(lc.total, ref.sum(0) / len(x), atol=1e-10)
    assert lc.method == "unfold"


def test_auto_picks_unfold_for_wide_codes() -> None:
    """8-bit operands with few taps: one scatter per tap beats one conv per weight code."""
    torch.manual_seed(0)
    layer = QLinear.from_float(nn.Linear(6, 5), w_bits=8, a_bits=8, a_signed=False).double()
    x = torch.rand(64, 6, dtype=torch.float64)
    with torch.no_grad():
        layer(x)
    model = Net(layer, nn.Linear(5, 3).double()).eval()
    y = torch.randint(0, 3, (64,))
    ref = brute_force_counts(layer, x, _per_sample_grad(model, x, y))
    lc = counting_matrices(model, (x, y), groups=64).layers["layer"]
    assert lc.method == "unfold"
    np.testing.assert_allclose(lc.groups, ref, atol=1e-10)


def test_padding_counts_under_code_zero() -> None:
    model, x, y = _setup("plain")
    on = counting_matrices(model, (x, y), groups=1, pad_taps=True).layers["layer"].total
    off = counting_matrices(model, (x, y), groups=1, pad_taps=False).layers["layer"].total
    np.testing.assert_allclose(on[1:], off[1:], atol=1e-12)  # only row u=0 differs
    assert not np.allclose(on[0], off[0])


def _error_emulator(table: np.ndarray, eps: float, pad_taps: bool = True):
    """Brute-force emulator: exact accumulation + eps * sum_k E(x_k, w_k) (gathered per product)."""
    e = torch.from_numpy(table).double()

    def emulate(layer, x_int, w_int):
        fmt = layer.operand_format
        a_min, w_min = fmt.a_range[0], fmt.w_range[0]
        acc = layer.integer_op(x_int, w_int)
        if isinstance(layer, QConv2d):
            cols = _codes_unfold(layer, x_int, pad_taps).long()  # (N, C*k, L)
            per_group = layer.out_channels // layer.groups
            k = cols.shape[1] // layer.groups
            w_flat = w_int.reshape(layer.out_channels, -1).long()
            err = torch.zeros(acc.shape[0], layer.out_channels, cols.shape[-1], dtype=torch.float64)
            for o in range(layer.out_channels):
                grp = o // per_group
                u = cols[:, grp * k : (grp + 1) * k, :]
                err[:, o] = e[u - a_min, (w_flat[o] - w_min)[None, :, None].expand_as(u)].sum(1)
            return acc + eps * err.reshape(acc.shape)
        xi, wi = x_int.long(), w_int.long()
        err = e[(xi - a_min)[..., None, :], wi - w_min].sum(-1)
        return acc + eps * err

    return emulate


@pytest.mark.parametrize("kind", ["plain", "stride_groups", "depthwise", "linear", "linear3d"])
def test_first_order_matches_finite_difference(kind: str) -> None:
    model, x, y = _setup(kind, seed=3)
    fmt = model.layer.operand_format
    rng = np.random.default_rng(0)
    table = rng.integers(-3, 4, size=fmt.shape).astype(np.float64)
    lc = counting_matrices(model, (x, y), groups=4).layers["layer"]
    predicted = float((lc.total * table).sum())

    def loss_at(eps: float) -> float:
        model.layer.emulator = _error_emulator(table, eps)
        with torch.no_grad():
            val = F.cross_entropy(model(x), y).item()  # mean loss: the normalisation of `total`
        model.layer.emulator = None
        return val

    eps = 1e-5
    measured = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert measured == pytest.approx(predicted, rel=1e-5, abs=1e-9)


def test_two_quantized_layers_and_frozen_params() -> None:
    torch.manual_seed(1)
    l1 = QConv2d.from_float(nn.Conv2d(2, 3, 3, padding=1), 2, 4, a_signed=True).double()
    l2 = QLinear.from_float(nn.Linear(3 * 5 * 5, 4), 4, 2, a_signed=False).double()
    model = nn.Sequential(l1, nn.ReLU(), nn.Flatten(), l2).double().eval()
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    with torch.no_grad():
        model(x)
    for p in model.parameters():
        p.requires_grad_(False)
    store = {}

    def hook(name):
        def fn(m, i, o):
            if not o.requires_grad:
                o.requires_grad_(True)
            o.retain_grad()
            store[name] = (i[0].detach(), o)
            return o
        return fn

    hs = [model[0].register_forward_hook(hook("0")), model[3].register_forward_hook(hook("3"))]
    F.cross_entropy(model(x), y, reduction="sum").backward()
    for h in hs:
        h.remove()
    res = counting_matrices(model, (x, y), groups=6)
    for name, layer in (("0", model[0]), ("3", model[3])):
        xin, out = store[name]
        ref = brute_force_counts(layer, xin, out.grad, True)
        np.testing.assert_allclose(res.layers[name].groups, ref, atol=1e-10)
    assert res.memory_bytes == sum(lc.groups.nbytes + lc.total.nbytes for lc in res.layers.values())


@pytest.mark.parametrize("kind", ["plain", "stride_groups", "linear"])
@pytest.mark.parametrize("method", ["weight", "activation", "unfold"])
def test_float32_convolutions_stay_close_to_brute_force(kind: str, method: str) -> None:
    """What `fames.select` uses: float32 counting convolutions, float64 sums."""
    model, x, y = _setup(kind)
    ref = brute_force_counts(model.layer, x, _per_sample_grad(model, x, y), True)
    lc = counting_matrices(model, (x, y), groups=100, method=method, batch_size=4,
                           dtype=torch.float32).layers["layer"]
    assert lc.groups.dtype == np.float64
    scale = np.abs(ref).max()
    assert np.abs(lc.groups - ref).max() <= 1e-5 * scale
    assert np.abs(lc.total - ref.sum(0) / len(x)).max() <= 1e-5 * scale


def test_bad_arguments() -> None:
    model, x, y = _setup("linear")
    with pytest.raises(ValueError, match="method"):
        counting_matrices(model, (x, y), method="rows")
    with pytest.raises(ValueError, match="groups"):
        counting_matrices(model, (x, y), groups=0)
    with pytest.raises(ValueError, match="no quantized layers"):
        counting_matrices(nn.Linear(3, 2), (x, y))
    with pytest.raises(ValueError, match="unknown quantized layers"):
        counting_matrices(model, (x, y), layers=["nope"])
