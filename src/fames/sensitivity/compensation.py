"""Mean-error compensation: a per-output-channel constant added to the accumulator (the bias adder).

An approximate multiplier with error table ``E`` shifts the accumulator of output channel ``o`` by
``sum_k E(x_k, w_ok)``. Its expectation over the calibration data,

    mu_o = (1 / NP) sum_k sum_u hist_k[u] * E[u, w_ok]        (NP = output positions seen, hist_k[u] =
                                                              how often tap k read activation code u)

depends only on the layer's weights, the activation-code histogram of every kernel tap and ``E``, so it
costs one small product per (layer, multiplier), no emulation. Subtracting ``round(mu_o)`` from the
accumulator leaves the multiplier's zero-mean error only; the constant rides on the bias addition every
accelerator already performs, so it costs no hardware and no retraining (the same idea as the bias
correction of post-training quantization). The estimators see the compensated error through

    t_n' = t_n - sum_o G_{n,o} * round(mu_o),    G_{n,o} = sum_p g_{n,o,p} s_a s_w[o]

(`ChannelStats.grads` holds ``G`` summed per micro-batch group). Offsets are computed on the exact model's
activations (every layer on its own, as the estimates assume), never from the test split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fames.multipliers.appmul import AppMul


@dataclass
class ChannelStats:
    """What compensation needs of one layer, gathered in the counting pass.

    Attributes:
        grads: ``(G, O)`` per-group sums of ``g s_a s_w[o]`` over samples and output positions.
        taps: ``(K, |A|)`` how often each kernel tap read each activation code (taps ordered as the weight's
            flattened ``(in_channel, kh, kw)``, or the input features of a linear layer); skipped padded
            taps are not counted.
        positions: output positions per channel seen (samples x positions per sample).
        weight_index: ``(O, K / conv_groups)`` weight code index (column of ``E``) of every tap.
        conv_groups: convolution groups (1 for linear layers).
    """

    grads: np.ndarray
    taps: np.ndarray
    positions: int
    weight_index: np.ndarray
    conv_groups: int = 1

    def mean_errors(self, errors: np.ndarray) -> np.ndarray:
        """``(M, O)`` expected accumulator error of each output channel for error tables ``(M, |A|, |W|)``."""
        errors = np.asarray(errors, dtype=np.float64)
        n_out, k_g = self.weight_index.shape
        out_g = n_out // self.conv_groups
        mu = np.zeros((errors.shape[0], n_out))
        for grp in range(self.conv_groups):
            hist = self.taps[grp * k_g : (grp + 1) * k_g]  # (K_g, |A|)
            q = np.einsum("ka,maw->mkw", hist, errors)  # (M, K_g, |W|)
            rows = slice(grp * out_g, (grp + 1) * out_g)
            picked = q[:, np.arange(k_g)[None, :], self.weight_index[rows]]  # (M, O_g, K_g)
            mu[:, rows] = picked.sum(axis=2)
        return mu / max(self.positions, 1)

    def offsets(self, errors: np.ndarray) -> np.ndarray:
        """``(M, O)`` integer accumulator offsets ``round(mu_o)`` (what the hardware adds)."""
        return np.round(self.mean_errors(errors))


def tap_histogram(x_idx: torch.Tensor, n_codes: int, conv: tuple | None = None) -> torch.Tensor:
    """``(K, n_codes)`` float64 code counts per kernel tap.

    Args:
        x_idx: code indices ``0..n_codes`` (``n_codes`` marks a skipped padded tap, not counted);
            ``(N, C, H, W)`` already padded for a conv, ``(N, ..., in)`` for a linear layer.
        n_codes: activation codes of the format.
        conv: ``(kernel_size, stride, dilation, output (Ho, Wo))`` of a conv; None for a linear layer.

    A conv first counts codes per input position (one bincount over the batch), then sums, for every tap,
    the strided window of positions that tap reads: exact, and never unfolds the input.
    """
    width = n_codes + 1
    if conv is None:
        flat = x_idx.reshape(-1, x_idx.shape[-1]).long()
        ids = flat + torch.arange(flat.shape[1], device=flat.device) * width
        counts = torch.bincount(ids.reshape(-1), minlength=flat.shape[1] * width)
        return counts.reshape(flat.shape[1], width)[:, :n_codes].to("cpu", torch.float64)
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = conv
    n, c, hp, wp = x_idx.shape
    cells = c * hp * wp
    ids = x_idx.reshape(n, cells).long() + torch.arange(cells, device=x_idx.device) * width
    per_cell = torch.bincount(ids.reshape(-1), minlength=cells * width).to(torch.float64)
    per_cell = per_cell.reshape(c, hp, wp, width)[..., :n_codes]
    hist = torch.empty(c, kh, kw, n_codes, dtype=torch.float64, device=x_idx.device)
    for i in range(kh):
        for j in range(kw):
            window = per_cell[:, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
            hist[:, i, j] = window.sum(dim=(1, 2))
    return hist.reshape(c * kh * kw, n_codes).cpu()


class OffsetTable:
    """Accumulator offsets of every (layer, multiplier) pair, computed on first use and cached.

    Args:
        stats: ``{layer: ChannelStats}`` (``LayerCounts.channel`` of every layer).
        library: anything with ``get(name) -> AppMul``.
        pairs: the ``(layer, multiplier name)`` pairs that are compensated; None: all. Others get zeros.
    """

    def __init__(self, stats: Mapping[str, ChannelStats], library,
                 pairs: Iterable[tuple[str, str]] | None = None) -> None:
        self.stats, self.library = dict(stats), library
        self.pairs = None if pairs is None else set(pairs)
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def offset(self, layer: str, mul: AppMul) -> np.ndarray:
        """``(O,)`` integer offsets of `mul` on `layer` (zeros for an exact or uncompensated pair)."""
        key = (layer, mul.name)
        if key not in self._cache:
            stats = self.stats[layer]
            if mul.is_exact or (self.pairs is not None and key not in self.pairs):
                self._cache[key] = np.zeros(stats.weight_index.shape[0])
            else:
                self._cache[key] = stats.offsets(mul.error_table[None].astype(np.float64))[0]
        return self._cache[key]

    def for_assignment(self, assignment: Mapping[str, str]) -> dict[str, list[int]]:
        """``{layer: offsets}`` of the layers of `assignment` with a non-zero offset (JSON-ready ints)."""
        out = {}
        for layer, name in assignment.items():
            off = self.offset(layer, self.library.get(name))
            if np.any(off != 0):
                out[layer] = [int(v) for v in off]
        return out


def choose_compensation(plain: dict[str, dict[str, float]], compensated: dict[str, dict[str, float]]
                        ) -> tuple[dict[str, dict[str, float]], set[tuple[str, str]]]:
    """Per (layer, multiplier), the lower of the two estimates, and the pairs where compensation won.

    Removing the mean error does not always help: for a zero-preserving multiplier whose error sits on
    rare large activations, the constant also lands on the many positions that had no error. Both
    variants cost the same energy, so the ILP is given the one estimated to hurt less.
    """
    table, pairs = {}, set()
    for layer, cands in plain.items():
        table[layer] = {}
        for name, value in cands.items():
            comp = compensated[layer][name]
            if comp < value:
                pairs.add((layer, name))
            table[layer][name] = min(value, comp)
    return table, pairs
