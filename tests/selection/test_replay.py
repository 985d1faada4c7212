"""Replayed quantized-layer outputs: evaluations bit-identical to plain ones, and the replay really skips work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fames.emulation import approximate_
from fames.multipliers.appmul import AppMul
from fames.multipliers.library import Library
from fames.quant.api import quant_layers, quantize_
from fames.selection.evaluate import evaluate_model, make_evaluator
from fames.selection.replay import LayerReplay


class SkipNet(nn.Module):
    """A conv feeding both a later conv and an addition (a skip connection), with in-place ops on layer outputs
    (``add_`` is not idempotent: replaying an output it already changed would be caught)."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(1, 4, 3, padding=1)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu_(self.c0(x).add_(0.25))
        h = h + torch.relu_(self.c2(torch.relu_(self.c1(h))))
        return self.fc(h.flatten(1))


def _world(n: int = 40) -> tuple[nn.Module, Library, list[str], torch.Tensor, torch.Tensor]:
    net = SkipNet()
    x, y = torch.randn(n, 1, 6, 6), torch.randint(0, 5, (n,))
    quantize_(net, {"c0": 4, "c1": 3, "c2": {"w": 2, "a": 4}, "fc": 4}, calibration=x)
    rng = np.random.default_rng(0)
    muls = []
    for name, layer in quant_layers(net):
        fmt = layer.operand_format
        exact = fmt.exact_table()
        muls.append(AppMul.exact(fmt))
        for k in range(2):
            noise = rng.integers(-3, 4, size=exact.shape)
            muls.append(AppMul(f"{name}_m{k + 1}", fmt, exact + noise))
    return net.eval(), Library(muls), [n for n, _ in quant_layers(net)], x, y


def _assignment(layers: list[str], picks: tuple[int, ...]) -> dict[str, str]:
    """Layer i gets its multiplier ``picks[i]`` (0: exact, 1-2: the random ones)."""
    return {layer: f"{layer}_m{p}" for layer, p in zip(layers, picks, strict=True) if p}


SEQUENCE = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 2, 1, 1), (0, 0, 0, 0), (1, 1, 1, 2), (2, 1, 1, 1), (1, 1, 1, 1),
            (1, 1, 2, 2)]


def test_replayed_evaluations_equal_plain_ones_and_skip_the_agreeing_prefix() -> None:
    net, lib, layers, x, y = _world()
    plain, replaying = make_evaluator(x, y, batch_size=16, replay_bytes=0), make_evaluator(x, y, batch_size=16)
    assert plain.replay is None and replaying.replay is not None
    replay = replaying.replay
    for picks in SEQUENCE:
        approximate_(net, _assignment(layers, picks), lib)
        for part in (slice(0, 16), slice(16, None), None):
            want, got = plain.results(net, part), replaying.results(net, part)
            np.testing.assert_array_equal(got.correct, want.correct)
            np.testing.assert_array_equal(got.loss, want.loss)  # bit-identical, not merely close
    assert replay.replayed > 0 and replay.nbytes <= replay.max_bytes
    # on a fresh store, (1,1,1,2) after (1,1,1,1): every batch's three convs are replayed, only fc is computed
    replaying = make_evaluator(x, y, batch_size=16)
    replay = replaying.replay
    approximate_(net, _assignment(layers, (1, 1, 1, 1)), lib)
    replaying(net)  # the first batch learns that the in-place ReLUs change c0-c2's outputs: stored next time
    replaying(net)
    approximate_(net, _assignment(layers, (1, 1, 1, 2)), lib)
    before_calls, before_replayed = replay.calls, replay.replayed
    replaying(net)
    batches = -(-len(x) // 16)
    assert replay.calls - before_calls == 4 * batches
    assert replay.replayed - before_replayed == 3 * batches
    # changing the first layer leaves nothing to replay
    approximate_(net, _assignment(layers, (2, 1, 1, 2)), lib)
    before_replayed = replay.replayed
    replaying(net)
    assert replay.replayed == before_replayed


def test_changed_weights_clear_the_store() -> None:
    net, lib, layers, x, y = _world()
    ev = make_evaluator(x, y, batch_size=64)
    approximate_(net, _assignment(layers, (1, 1, 1, 1)), lib)
    ev(net)
    with torch.no_grad():
        net.c0.weight.mul_(-1.0)  # in place: same storage, new version
    got = ev.results(net)
    want = evaluate_model(net, x, y, 64)
    np.testing.assert_array_equal(got.loss, want.loss)
    assert ev.replay.replayed == 0


def test_custom_emulator_without_a_key_is_computed() -> None:
    net, lib, layers, x, y = _world()
    ev = make_evaluator(x, y, batch_size=64)
    calls = []

    def doubled(layer, x_int, w_int):
        calls.append(1)
        return 2 * layer.integer_op(x_int, w_int)

    for _ in range(2):
        approximate_(net, {}, lib)
        net.c0.emulator = doubled  # no replay_key: c0, and everything after it, is computed each time
        got = ev.results(net)
    assert len(calls) == 2 and ev.replay.replayed == 0
    np.testing.assert_array_equal(got.loss, evaluate_model(net, x, y, 64).loss)


def test_byte_budget_is_kept_and_zero_stores_nothing() -> None:
    net, lib, layers, x, y = _world()
    one = LayerReplay(0)
    small = LayerReplay(3 * 16 * 4 * 6 * 6 * 4)  # about three conv outputs of one 16-image batch
    for picks in SEQUENCE:
        approximate_(net, _assignment(layers, picks), lib)
        for replay in (one, small):
            evaluate_model(net, x, y, 16, replay)
            assert replay.nbytes <= replay.max_bytes
    assert one.nbytes == 0 and one.replayed == 0
    assert small.nbytes > 0
    with pytest.raises(ValueError, match=">= 0"):
        LayerReplay(-1)
