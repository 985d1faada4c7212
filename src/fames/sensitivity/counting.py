"""Counting matrices (DESIGN.md section 3) from one forward/backward pass over a calibration set.

For a quantized layer ``l`` with output gradient ``g = dL/dy_l``::

    C_l[u, v] = sum_{n, o} g_{n,o} * s_a * s_w[c(o)] * #{k in RF(o) : x_{n,k} = u, w_k = v}

Because ``y_approx - y_exact = s_a s_w sum_k E(x_k, w_k)``, ``<C_l, E>`` is the first-order change of
the loss when layer ``l`` uses a multiplier with error table ``E``.

Normalisation: the loss is the **mean** cross-entropy over the calibration set, ``L = (1/N) sum_n l_n``.
``LayerCounts.total`` is ``C_l`` for that mean loss. ``LayerCounts.groups[g]`` is the sum over the samples
``n`` of micro-batch ``g`` of the per-sample matrices ``C_{l,n}`` built with ``dl_n/dy`` (not divided by N),
so ``total = groups.sum(0) / N`` and ``t_n = <C_{l,n}, E>`` is the change of sample ``n``'s own loss.
Samples go to groups round-robin (global sample index modulo ``groups``); with ``groups >= N`` every
group holds one sample and the matrices are exactly per-sample. Memory: ``G * |A| * |W| * 8`` bytes per
layer (reported in `CountingResult.memory_bytes`).

Three exact ways to compute a matrix, never enumerating products:

- weight split: for every weight code ``v`` present, ``H_v = conv_transpose(g s_a s_w, 1[w == v])`` (the
  input gradient of a conv with the 0/1 kernel), then scatter-add ``H_v`` by activation code (bincount);
  cost ~ ``|W present|`` convolutions;
- activation split: for every activation code ``u`` present, ``H_u = conv_weight_grad(1[x == u], g s_a s_w)``,
  then scatter-add ``H_u`` by weight code. Per-group matrices need one pass per group present in a batch;
- unfold split: for every kernel tap ``k`` (``Cin/groups * kh * kw`` of them, ``in_features`` for a linear
  layer) scatter-add ``g[n, o, p] s_a s_w[o]`` into ``H_k[(group(n), x_{n,k,p}), o]`` (one row scatter per
  tap), then add column ``H_k[:, o]`` into column ``w[o, k]`` of ``C``. Cost ~ one convolution's MACs as
  scatter-adds, independent of the number of codes: the fast one for wide (8-bit) operands.

``method="auto"`` picks, per layer and batch, the one with the smallest modelled time (`COST`). On the LeNet
reference checkpoint (1024 images, 256 groups, one CPU thread) that is the unfold split for the 8-bit conv1
(9.4 s -> 0.9 s) and fc3 (1.1 s -> 0.1 s) and the weight split for the 2/4-bit layers.

Padding: with ``pad_taps=True`` (the default, as in emulation and in hardware that feeds padded
positions through the multiplier) padded taps are counted under activation code 0; with
``pad_taps=False`` (accelerators that skip padded taps) they are not counted at all.

The same pass also fills ``LayerCounts.channel`` (`fames.sensitivity.compensation.ChannelStats`): the
per-group sums of ``g s_a s_w`` per output channel and the activation-code histogram of every kernel tap,
which is all that mean-error compensation and its estimates need.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fames.multipliers.formats import OperandFormat
from fames.quant.api import quant_layers
from fames.quant.exact_math import exact_math
from fames.quant.layers import QConv2d, QLinear, QuantLayer
from fames.sensitivity.compensation import ChannelStats, tap_histogram

log = logging.getLogger(__name__)

Batches = tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("auto", "weight", "activation", "unfold")
# _unfold_split keeps H_k over all (group present, code) rows while they number at most this many times the
# (sample, position) pairs of the batch, and compacts it to the rows a tap touches otherwise.
DENSE_ROWS_RATIO = 1.0
# Modelled seconds per unit of work for method="auto", fitted to the per-layer times of the LeNet
# reference checkpoint (float64, one CPU thread, x86): call = one small op's overhead, mac = one
# multiply-add of a counting conv, bin = one bincount input/output element, scatter = one element of a
# tap's row scatter, h = one element of H_k (zeroing plus its scatter into the weight-code columns).
# The fit is within ~2x per layer, enough to separate the methods, which differ by 5-100x there.
COST = {"call": 2e-5, "mac": 1e-10, "bin": 5e-9, "scatter": 1.8e-9, "h": 3e-9}


@dataclass
class LayerCounts:
    """Counting matrices of one layer.

    Attributes:
        name: layer name in the model.
        fmt: operand format (rows = activation codes ascending, columns = weight codes ascending).
        total: ``C_l`` for the mean loss, float64 ``(|A|, |W|)``.
        groups: ``(G, |A|, |W|)`` sums of per-sample matrices of each micro-batch (see module docstring).
        group_sizes: samples per group, shape ``(G,)``.
        method: ``"weight"``, ``"activation"`` or ``"unfold"`` split used on the last batch.
        channel: per-channel statistics for mean-error compensation (`fames.sensitivity.compensation`).
    """

    name: str
    fmt: OperandFormat
    total: np.ndarray
    groups: np.ndarray
    group_sizes: np.ndarray
    method: str = "weight"
    channel: ChannelStats | None = None

    @property
    def n_samples(self) -> int:
        return int(self.group_sizes.sum())

    @property
    def memory_bytes(self) -> int:
        return int(self.groups.nbytes + self.total.nbytes)


@dataclass
class CountingResult:
    """Counting matrices of every quantized layer plus bookkeeping.

    Attributes:
        layers: ``{layer name: LayerCounts}`` in model order.
        n_samples: calibration samples seen.
        loss: mean loss over the calibration set (the quantity the estimates predict the change of).
        pad_taps: whether padded taps were counted under activation code 0.
        seconds: wall time of the pass.
        memory_bytes: bytes held by all matrices.
    """

    layers: dict[str, LayerCounts]
    n_samples: int
    loss: float
    pad_taps: bool
    seconds: float
    memory_bytes: int = field(default=0)


def iter_batches(data: Batches, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches from a tensor pair (split by `batch_size`) or an iterable of pairs.

    Raises:
        TypeError: when `data` is neither.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data must be an (x, y) tensor pair or an iterable of them, got {type(data).__name__}")
    for item in data:
        x, y = item
        yield x, y


class _Accumulator:
    """Per-layer state: codes captured in the forward pass, matrices accumulated in the backward pass."""

    def __init__(self, name: str, layer: QuantLayer, groups: int, pad_taps: bool, method: str,
                 dtype: torch.dtype) -> None:
        self.name, self.layer, self.pad_taps, self.method, self.dtype = name, layer, pad_taps, method, dtype
        self.fmt = layer.operand_format
        self.n_a, self.n_w = self.fmt.shape
        self.a_min, self.w_min = self.fmt.a_range[0], self.fmt.w_range[0]
        self.sums: torch.Tensor | None = None  # (G, |A|, |W|) float64 on the CPU, allocated on first use
        # unfold split: C transposed, (|W|, G * (|A| + 1)), on the data's device; merged in `matrices`
        self.sums_t: torch.Tensor | None = None
        self.sizes = np.zeros(groups, dtype=np.int64)
        self.n_groups = groups
        self.used_method = method
        self.saved: dict | None = None
        self.channel_grads: torch.Tensor | None = None  # (G, O) float64
        self.taps: torch.Tensor | None = None  # (K, |A|) float64
        self.positions = 0
        self.weight_index: np.ndarray | None = None

    def forward_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x_int, s_a = self.layer.input_codes(inputs[0])
            w_int, s_w = self.layer.weight_codes()
        self.saved = {"x": x_int.detach(), "w": w_int.detach(), "scale": (s_a * s_w).detach()}
        return output

    def add(self, g: torch.Tensor, group_of_sample: torch.Tensor) -> None:
        """Accumulate the matrices for output gradient `g` (per-sample loss gradients)."""
        if self.saved is None:
            raise RuntimeError(f"layer {self.name!r} produced a gradient without a forward pass")
        saved, self.saved = self.saved, None
        x, w = saved["x"].to(self.dtype), saved["w"].to(self.dtype)
        scale = saved["scale"].to(self.dtype)
        g = g.to(self.dtype)
        if isinstance(self.layer, QConv2d):
            gs = g * scale.reshape(1, -1, 1, 1)
            if self.pad_taps and any(self.layer.padding):
                ph, pw = self.layer.padding
                x = F.pad(x, (pw, pw, ph, ph), value=0.0)  # padded taps carry activation code 0
                padding: tuple[int, int] | str = (0, 0)
            else:
                padding = self.layer.padding
            op = _ConvOp(self.layer, padding)
        elif isinstance(self.layer, QLinear):
            gs = g * scale
            n = x.shape[0]
            x, gs = x.reshape(n, -1, x.shape[-1]), gs.reshape(n, -1, gs.shape[-1])
            op = _LinearOp()
        else:  # pragma: no cover - only the two quantized layer types exist
            raise TypeError(f"unsupported layer type {type(self.layer).__name__}")
        x_idx = (x - self.a_min).round().long()
        w_idx = (w - self.w_min).round().long()
        self._channel_stats(op, x_idx, w_idx, gs, group_of_sample)
        present_groups = torch.unique(group_of_sample)
        method = self.method
        if method == "auto":
            method = self._cheapest(op, x_idx, w_idx, gs, present_groups)
        self.used_method = method
        if method == "weight":
            block = self._weight_split(op, x, x_idx, w_idx, gs, group_of_sample)
        elif method == "activation":
            block = self._activation_split(op, x_idx, w_idx, gs, group_of_sample, present_groups)
        else:
            self._unfold_split(op, x_idx, w_idx, gs, group_of_sample, present_groups)
            block = None
        if block is not None:
            if self.sums is None:
                self.sums = torch.zeros(self.n_groups, self.n_a, self.n_w, dtype=torch.float64)
            self.sums += block.to("cpu", torch.float64)
        np.add.at(self.sizes, group_of_sample.cpu().numpy(), 1)

    def _channel_stats(self, op: _ConvOp | _LinearOp, x_idx: torch.Tensor, w_idx: torch.Tensor,
                       gs: torch.Tensor, group_of_sample: torch.Tensor) -> None:
        """Accumulate what mean-error compensation needs: per-group channel gradient sums, tap histograms."""
        per_sample = gs.sum(dim=(2, 3)) if gs.dim() == 4 else gs.sum(dim=1)  # (N, O)
        if self.channel_grads is None:
            self.channel_grads = torch.zeros(self.n_groups, per_sample.shape[1], dtype=torch.float64)
        self.channel_grads.index_add_(0, group_of_sample.cpu(), per_sample.to("cpu", torch.float64))
        if isinstance(op, _ConvOp):
            xp = op.pad_codes(x_idx, self.n_a)
            hist = tap_histogram(xp, self.n_a, (op.kernel_size, op.kw["stride"], op.kw["dilation"],
                                                tuple(gs.shape[2:])))
        else:
            hist = tap_histogram(x_idx, self.n_a)
        self.taps = hist if self.taps is None else self.taps + hist
        self.positions += gs.numel() // op.out_features(gs)
        if self.weight_index is None:
            self.weight_index = w_idx.reshape(w_idx.shape[0], -1).cpu().numpy()

    def channel_stats(self, keep: np.ndarray) -> ChannelStats | None:
        """The accumulated `ChannelStats` for the non-empty groups `keep`."""
        if self.channel_grads is None or self.taps is None or self.weight_index is None:
            return None
        return ChannelStats(self.channel_grads.numpy()[keep], self.taps.cpu().numpy(), self.positions,
                            self.weight_index, getattr(self.layer, "groups", 1))

    def _weight_split(self, op: _ConvOp | _LinearOp, x: torch.Tensor, x_idx: torch.Tensor,
                      w_idx: torch.Tensor, gs: torch.Tensor, group_of_sample: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.n_groups * self.n_a, self.n_w, dtype=torch.float64, device=x.device)
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        flat_idx = (group_of_sample.reshape(shape) * self.n_a + x_idx).reshape(-1)
        for v in torch.unique(w_idx).tolist():
            h = op.input_grad(x.shape, (w_idx == v).to(self.dtype), gs)
            out[:, v] = torch.bincount(flat_idx, weights=h.reshape(-1).double(), minlength=self.n_groups * self.n_a)
        return out.reshape(self.n_groups, self.n_a, self.n_w)

    def _activation_split(self, op: _ConvOp | _LinearOp, x_idx: torch.Tensor, w_idx: torch.Tensor,
                          gs: torch.Tensor, group_of_sample: torch.Tensor,
                          present_groups: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.n_groups, self.n_a, self.n_w, dtype=torch.float64, device=x_idx.device)
        flat_w = w_idx.reshape(-1)
        for grp in present_groups.tolist():
            sel = group_of_sample == grp
            xg, gg = x_idx[sel], gs[sel]
            for u in torch.unique(xg).tolist():
                h = op.weight_grad((xg == u).to(self.dtype), w_idx.shape, gg)
                out[grp, u] = torch.bincount(flat_w, weights=h.reshape(-1).double(), minlength=self.n_w)
        return out


    def _cheapest(self, op: _ConvOp | _LinearOp, x_idx: torch.Tensor, w_idx: torch.Tensor,
                  gs: torch.Tensor, present_groups: torch.Tensor) -> str:
        """Method with the smallest modelled time on this batch (constants in `COST`)."""
        n, cout = gs.shape[0], op.out_features(gs)
        n_pos = gs[0, 0].numel() if gs.dim() == 4 else gs.shape[1]  # output positions per sample
        taps = w_idx[0].numel()  # kernel taps per output (Cin/groups * kh * kw, or in_features)
        macs = n * n_pos * cout * taps  # MACs of the layer on this batch
        n_x, gp = x_idx.numel(), int(present_groups.numel())
        # codes present: a bincount is linear in the tensor, torch.unique sorts it (a quarter of ResNet's
        # whole counting pass went into the sorts)
        n_wp = int((torch.bincount(w_idx.reshape(-1), minlength=self.n_w) > 0).sum())
        n_ap = int((torch.bincount(x_idx.reshape(-1), minlength=self.n_a) > 0).sum())
        rows = self.n_groups * self.n_a
        h_rows = min(gp * (self.n_a + 1), DENSE_ROWS_RATIO * n * n_pos)
        c = COST
        cost = {
            # |W| input-gradient convs, each followed by a bincount over (groups x codes)
            "weight": n_wp * (c["call"] + macs * c["mac"] + (n_x + rows) * c["bin"]),
            # |A| weight-gradient convs per group present (each on that group's samples)
            "activation": n_ap * (gp * c["call"] + macs * c["mac"] + gp * w_idx.numel() * c["bin"]),
            # per tap: a few ops, the H_k rows, and every (sample, position, output) scattered once
            "unfold": op.n_taps(w_idx) * (5 * c["call"] + h_rows * (cout // op.groups) * c["h"])
                      + macs * c["scatter"],
        }
        return min(cost, key=cost.get)

    def matrices(self) -> torch.Tensor:
        """``(G, |A|, |W|)`` float64 sums of every batch (merges the unfold split's accumulator)."""
        if self.sums_t is not None:
            c = self.sums_t.t().reshape(self.n_groups, self.n_a + 1, self.n_w)[:, : self.n_a]
            c = c.to("cpu", torch.float64).contiguous()
            self.sums_t = None
            self.sums = c if self.sums is None else self.sums.add_(c)
        if self.sums is None:
            self.sums = torch.zeros(self.n_groups, self.n_a, self.n_w, dtype=torch.float64)
        return self.sums

    def _unfold_split(self, op: _ConvOp | _LinearOp, x_idx: torch.Tensor, w_idx: torch.Tensor,
                      gs: torch.Tensor, group_of_sample: torch.Tensor, present_groups: torch.Tensor) -> None:
        """Per-tap scatter, accumulated into `sums_t`.

        For every kernel tap ``k``: ``H_k[(grp(n), x_{n,k,p}), o] += gs[n, o, p]`` with one row-wise scatter
        over the combined index ``group * (|A| + 1) + code``, then ``C[:, w[o, k]] += H_k[:, o]`` with a
        second scatter over the weight-code axis. Code ``|A|`` collects skipped padded taps and is dropped.
        ``H_k`` spans the (group present, code) rows while they are at most `DENSE_ROWS_RATIO` times the
        (sample, position) pairs of the batch, and only the rows the tap touches otherwise.
        """
        n_a1, n_w, dev = self.n_a + 1, self.n_w, x_idx.device
        if self.sums_t is None:
            self.sums_t = torch.zeros(n_w, self.n_groups * n_a1, dtype=torch.float64, device=dev)
        n = x_idx.shape[0]
        gp = int(present_groups.numel())
        local = torch.searchsorted(present_groups, group_of_sample)
        xp = op.pad_codes(x_idx, self.n_a)
        ids = local.reshape([n] + [1] * (xp.dim() - 1)) * n_a1 + xp  # local row of every code
        src = op.grad_rows(gs).to(torch.float64)  # (N * P, Cout), rows in (sample, position) order
        w2 = w_idx.reshape(w_idx.shape[0], -1)
        cout_g = w2.shape[0] // op.groups
        n_rows = gp * n_a1
        dense = n_rows <= DENSE_ROWS_RATIO * src.shape[0]
        all_groups = gp == self.n_groups  # local rows are the global ones
        glob = (present_groups[:, None] * n_a1 + torch.arange(n_a1, device=dev)).reshape(-1)
        # index_put_(accumulate=True) is the scatter-add: as fast as index_add_ on one CPU thread and far
        # faster when threads compete for cores
        for grp, k, view in op.taps(ids, gs):
            rows = view.reshape(-1)
            o_sl = slice(grp * cout_g, (grp + 1) * cout_g)
            wk = w2[o_sl, k]
            if dense:
                h = torch.zeros(n_rows, cout_g, dtype=torch.float64, device=dev)
                h.index_put_((rows,), src[:, o_sl], accumulate=True)
                used = None if all_groups else glob
            else:
                used, inv = torch.unique(rows, return_inverse=True)
                h = torch.zeros(used.numel(), cout_g, dtype=torch.float64, device=dev)
                h.index_put_((inv,), src[:, o_sl], accumulate=True)
                used = glob[used]
            h_t = h.t()
            if used is None:  # C[:, w[o, k]] += H_k[:, o]
                self.sums_t.index_put_((wk,), h_t, accumulate=True)
            else:
                self.sums_t.index_put_((wk[:, None], used[None, :]), h_t, accumulate=True)

class _ConvOp:
    def __init__(self, layer: QConv2d, padding: tuple[int, int] | str) -> None:
        self.kw = {"stride": layer.stride, "padding": padding, "dilation": layer.dilation,
                   "groups": layer.groups}
        self.groups = layer.groups
        self.kernel_size = layer.kernel_size

    @staticmethod
    def out_features(gs: torch.Tensor) -> int:
        return gs.shape[1]

    def n_taps(self, w_idx: torch.Tensor) -> int:
        return w_idx[0].numel() * self.groups

    def pad_codes(self, x_idx: torch.Tensor, sentinel: int) -> torch.Tensor:
        """`x_idx` with the conv's own padding applied as code `sentinel` (skipped taps)."""
        ph, pw = self.kw["padding"]
        return F.pad(x_idx, (pw, pw, ph, ph), value=sentinel) if ph or pw else x_idx

    @staticmethod
    def grad_rows(gs: torch.Tensor) -> torch.Tensor:
        return gs.permute(0, 2, 3, 1).reshape(-1, gs.shape[1])

    def taps(self, xp: torch.Tensor, gs: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(conv group, tap index within the group's kernel, (N, Ho, Wo) codes seen by that tap)``."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.kw["stride"], self.kw["dilation"]
        ho, wo = gs.shape[2], gs.shape[3]
        cin_g = xp.shape[1] // self.groups
        for grp in range(self.groups):
            for c in range(cin_g):
                for i in range(kh):
                    for j in range(kw):
                        view = xp[:, grp * cin_g + c, i * dh : i * dh + sh * (ho - 1) + 1 : sh,
                                  j * dw : j * dw + sw * (wo - 1) + 1 : sw]
                        yield grp, (c * kh + i) * kw + j, view

    def input_grad(self, x_shape: torch.Size, kernel: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
        return torch.nn.grad.conv2d_input(x_shape, kernel, gs, **self.kw)

    def weight_grad(self, x: torch.Tensor, w_shape: torch.Size, gs: torch.Tensor) -> torch.Tensor:
        return torch.nn.grad.conv2d_weight(x, w_shape, gs, **self.kw)


class _LinearOp:
    groups = 1

    @staticmethod
    def out_features(gs: torch.Tensor) -> int:
        return gs.shape[-1]

    @staticmethod
    def n_taps(w_idx: torch.Tensor) -> int:
        return w_idx.shape[1]

    @staticmethod
    def pad_codes(x_idx: torch.Tensor, sentinel: int) -> torch.Tensor:
        return x_idx

    @staticmethod
    def grad_rows(gs: torch.Tensor) -> torch.Tensor:
        return gs.reshape(-1, gs.shape[-1])

    @staticmethod
    def taps(xp: torch.Tensor, gs: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        for k in range(xp.shape[-1]):
            yield 0, k, xp[:, :, k]

    @staticmethod
    def input_grad(x_shape: torch.Size, kernel: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
        return gs @ kernel  # (N, T, out) @ (out, in)

    @staticmethod
    def weight_grad(x: torch.Tensor, w_shape: torch.Size, gs: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nto,nti->oi", gs, x)


def counting_matrices(
    model: nn.Module,
    calibration: Batches,
    *,
    groups: int = 256,
    pad_taps: bool = True,
    loss_fn: LossFn | None = None,
    method: str = "auto",
    batch_size: int = 256,
    dtype: torch.dtype = torch.float64,
    layers: Iterable[str] | None = None,
) -> CountingResult:
    """Counting matrices of every quantized layer from one forward/backward pass per batch.

    Args:
        model: a model with quantized layers (`fames.quant`); run in eval mode (restored afterwards).
        calibration: ``(x, y)`` tensors (split into `batch_size` batches) or an iterable of ``(x, y)``.
        groups: number of micro-batch groups ``G`` for the per-sample matrices (round-robin; ``G >= N``
            gives exact per-sample matrices). Memory ``G * |A| * |W| * 8`` bytes per layer.
        pad_taps: count padded taps under activation code 0 (hardware feeds zeros through the multiplier);
            False for accelerators that skip them. Must match the emulation's setting.
        loss_fn: per-sample loss ``(logits, y) -> (N,)``; default cross-entropy. The estimates predict the
            change of the mean of this loss.
        method: ``"auto"`` (cheapest by the `COST` model, per layer), ``"weight"`` (|W| input-gradient
            convs), ``"activation"`` (|A| weight-gradient convs per group present in a batch) or ``"unfold"``
            (one scatter-add per kernel tap).
        batch_size: batch size when `calibration` is a tensor pair.
        dtype: dtype of the counting convolutions; every sum is float64 whatever it is. float32 (what
            `fames.select` uses) is ~2x faster on CPUs (VGG reference: 16.7 -> 7.6 s) and moves the matrices by
            ~1e-7 of their largest entry; float64 (the default) is the exact reference for tests.
        layers: restrict to these layer names (default: all quantized layers).

    Returns:
        A `CountingResult`.

    Raises:
        ValueError: bad `groups`/`method`, no quantized layers, unknown layer names or empty data.

    Example:
        >>> # counts = counting_matrices(qmodel, (x_cal, y_cal), groups=64)
        >>> # counts.layers["conv1"].total.shape  -> (|A|, |W|)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    loss_fn = loss_fn or (lambda logits, y: F.cross_entropy(logits, y, reduction="none"))
    named = dict(quant_layers(model))
    if not named:
        raise ValueError("model has no quantized layers: run fames.quant.quantize_ first")
    if layers is not None:
        wanted = list(layers)
        unknown = [n for n in wanted if n not in named]
        if unknown:
            raise ValueError(f"unknown quantized layers {unknown}; known: {list(named)}")
        named = {n: named[n] for n in wanted}
    start = time.perf_counter()
    accs = {n: _Accumulator(n, m, groups, pad_taps, method, dtype) for n, m in named.items()}
    handles = [m.register_forward_hook(accs[n].forward_hook) for n, m in named.items()]
    was_training = model.training
    model.eval()
    seen, loss_sum = 0, 0.0
    try:
        for x, y in iter_batches(calibration, batch_size):
            with exact_math(x.device):  # TF32 in the backward pass would blur the (cancelling) sums
                outputs: dict[str, torch.Tensor] = {}
                hooks = [m.register_forward_hook(_capture(outputs, n)) for n, m in named.items()]
                try:
                    with torch.enable_grad():
                        losses = loss_fn(model(x), y)
                finally:
                    for h in hooks:
                        h.remove()
                if losses.dim() != 1 or losses.shape[0] != len(x):
                    raise ValueError(f"loss_fn must return one loss per sample, got shape {tuple(losses.shape)}")
                names = [n for n in named if n in outputs]
                grads = torch.autograd.grad(losses.sum(), [outputs[n] for n in names], allow_unused=True)
                group_of_sample = (torch.arange(seen, seen + len(x), device=x.device) % groups)
                for n, g in zip(names, grads, strict=True):
                    if g is None:
                        g = torch.zeros_like(outputs[n])
                    accs[n].add(g.detach(), group_of_sample)
            seen += len(x)
            loss_sum += float(losses.detach().sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("calibration data is empty")
    result: dict[str, LayerCounts] = {}
    for n, acc in accs.items():
        keep = acc.sizes > 0
        sums = acc.matrices().numpy()[keep]
        result[n] = LayerCounts(n, acc.fmt, sums.sum(axis=0) / seen, sums, acc.sizes[keep], acc.used_method,
                                acc.channel_stats(keep))
    memory = sum(lc.memory_bytes for lc in result.values())
    seconds = time.perf_counter() - start
    log.info("counting matrices: %d layers, %d samples, %.1f MB, %.2f s", len(result), seen, memory / 1e6,
             seconds)
    return CountingResult(result, seen, loss_sum / seen, pad_taps, seconds, memory)


def _capture(outputs: dict[str, torch.Tensor], name: str):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not output.requires_grad:  # frozen model: make the output a leaf we can differentiate to
            output = output.detach().requires_grad_(True)
        outputs[name] = output
        return output

    return hook
