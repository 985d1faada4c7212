"""Replay of quantized-layer outputs across evaluations of the same images.

The budget search evaluates many assignments on the same validation images, and successive ones often
agree on their first layers: a blame trial changes one layer of the accepted assignment, a retry keeps
most of the rejected one. A quantized layer's output depends only on the images and on what ran before it
in the forward pass, so when every quantized-layer call up to and including call ``k`` uses the same
multiplier as in a stored evaluation of the same batch, call ``k``'s output is that evaluation's.
`LayerReplay` keeps the quantized layers' outputs of recent evaluations per batch (least recently used
out first, within a byte budget) and, during an evaluation, hands out the stored outputs of the longest
agreeing prefix of calls instead of computing them. Everything else (norms, activations, pooling) still
runs: it is cheap next to emulated layers. Results are bit-identical, since the stored tensors are what
the same computation produced. Stored tensors are handed out uncopied; a pass that changes one in place
(an in-place activation right on a layer's output) drops what holds it, and that layer's outputs are
stored as copies from then on.

Measured on VGG at calibration seed 0 (default search, one core, batches of 512): the budget search's
evaluations took 79 s instead of 111 s, with the same choice (39.89 %). The GA gains less: re-running
windows of its journaled evaluations replayed 7 % (VGG) and 12 % (ResNet) of the layer calls, about 5-10 %
of its time on ResNet. Since convs run on integer units (about twice as fast), what a stored output costs
(fresh pages, first-touch faults) weighs more, so the default store shrank from 4 GiB to 1 GiB: the whole
default selection at seed 0 took 41.3 / 38.7 / 45.6 s on VGG with 4 GiB / 1 GiB / no store, and
55.5 / 50.8 / 51.2 s on ResNet (same choices; these repeat within about 3 s).

Valid while the model's parameters and buffers stay as they are: a fingerprint of them (storage and
version counter of each tensor) clears the store when they change, and a layer whose emulator has no
``replay_key`` (a custom one) ends the replayable prefix.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from fames.quant.api import quant_layers

DEFAULT_REPLAY_BYTES = 2**30  # at most this, and at most a quarter of the machine's memory
EXACT_KEY = ("exact",)


def default_replay_bytes() -> int:
    """`DEFAULT_REPLAY_BYTES`, capped at a quarter of physical memory where the OS tells it."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return DEFAULT_REPLAY_BYTES
    return int(min(DEFAULT_REPLAY_BYTES, physical // 4))


def layer_key(layer: nn.Module) -> Hashable | None:
    """What a quantized layer multiplies with now: `EXACT_KEY`, the emulator's ``replay_key``, or None
    when the emulator has none (its output cannot be matched)."""
    emulator = getattr(layer, "emulator", None)
    if emulator is None:
        return EXACT_KEY
    return getattr(emulator, "replay_key", None)


@dataclass
class _Entry:
    keys: tuple[tuple[str, Hashable], ...]  # (layer name, layer key) per call, in call order
    outputs: list[torch.Tensor]


class LayerReplay:
    """Stored quantized-layer outputs, per batch, of recent evaluations of one model on fixed images.

    Args:
        max_bytes: memory for stored outputs (default `default_replay_bytes`); 0 stores nothing.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = default_replay_bytes() if max_bytes is None else int(max_bytes)
        if self.max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._entries: OrderedDict[tuple[Hashable, int], _Entry] = OrderedDict()  # (batch, serial) -> entry
        self._mutated: set[str] = set()  # layers whose outputs a later in-place op changes: stored as copies
        self._held: dict[int, list] = {}  # id(tensor) -> [tensor, entries holding it] (replays share tensors)
        self._serial = 0
        self._fingerprint: tuple | None = None
        self.nbytes = 0
        self.calls = 0  # quantized-layer calls seen
        self.replayed = 0  # of which answered from the store

    def clear(self) -> None:
        """Forget every stored output."""
        self._entries.clear()
        self._held.clear()
        self.nbytes = 0

    @contextmanager
    def active(self, model: nn.Module) -> Iterator[Callable[[Hashable], AbstractContextManager[None]]]:
        """Within this context, ``with batch(key):`` around one forward pass of `model` on the batch
        identified by `key` replays and records its quantized-layer calls."""
        fingerprint = _fingerprint(model)
        if fingerprint != self._fingerprint:
            self.clear()
            self._fingerprint = fingerprint
        layers = dict(quant_layers(model))
        keys = {name: layer_key(layer) for name, layer in layers.items()}
        state: dict = {}

        def wrap(name: str, layer: nn.Module):
            compute = type(layer).forward

            def forward(*args, **kwargs):
                calls: list = state["calls"]
                i = len(calls)
                key = (name, keys[name])
                calls.append(key)
                self.calls += 1
                source = state["source"]
                if state["agree"] and key[1] is not None and source is not None and i < len(source.keys) \
                        and source.keys[i] == key:
                    self.replayed += 1
                    out = source.outputs[i]
                    state["outputs"].append(out)
                    if name in self._mutated:
                        return out.clone()
                    state["lent"].append((name, out, out._version))
                    return out
                state["agree"] = False
                out = compute(layer, *args, **kwargs)
                if name in self._mutated:
                    state["outputs"].append(out.detach().clone())
                else:
                    state["outputs"].append(out.detach())
                    state["lent"].append((name, out, out._version))
                return out

            return forward

        @contextmanager
        def batch(batch_key: Hashable):
            state.update(calls=[], outputs=[], lent=[], agree=True, source=self._best(batch_key, keys))
            yield
            # Stored tensors are handed out uncopied; one changed in place later in the pass (an in-place
            # activation on a layer's output) spoils what holds it, and that layer's outputs are copied from
            # then on.
            changed = [(name, t) for name, t, version in state["lent"] if t._version != version]
            if changed:
                self._mutated |= {name for name, _ in changed}
                spoiled = {id(t) for _, t in changed}
                for entry_id in [e for e, entry in self._entries.items()
                                 if any(id(t) in spoiled for t in entry.outputs)]:
                    self._drop(entry_id)
                return
            self._store(batch_key, tuple(state["calls"]), state["outputs"], state["source"])

        for name, layer in layers.items():
            layer.forward = wrap(name, layer)
        try:
            yield batch
        finally:
            for layer in layers.values():
                del layer.forward

    def _best(self, batch_key: Hashable, keys: dict[str, Hashable]) -> _Entry | None:
        """The stored entry of this batch agreeing with `keys` on the longest prefix of calls."""
        best, best_len, best_id = None, 0, None
        for entry_id, entry in self._entries.items():
            if entry_id[0] != batch_key:
                continue
            n = 0
            for name, key in entry.keys:
                if key is None or keys.get(name) != key:
                    break
                n += 1
            if n > 0 and n >= best_len:  # ties: the most recent (later in the order)
                best, best_len, best_id = entry, n, entry_id
        if best_id is not None:
            self._entries.move_to_end(best_id)
        return best

    def _store(self, batch_key: Hashable, keys: tuple, outputs: list[torch.Tensor], source: _Entry | None) -> None:
        if self.max_bytes == 0 or any(k is None for _, k in keys):
            return
        if source is not None and source.keys == keys:
            return  # the same evaluation again: already stored (and just moved to the end)
        new = {id(t): t for t in outputs if id(t) not in self._held}
        nbytes = sum(t.numel() * t.element_size() for t in new.values())
        if nbytes > self.max_bytes:
            return
        while self._entries and self.nbytes + nbytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._serial += 1
        self._entries[(batch_key, self._serial)] = _Entry(keys, list(outputs))
        for t in outputs:
            held = self._held.setdefault(id(t), [t, 0])
            held[1] += 1
        self.nbytes += nbytes

    def _drop(self, entry_id: tuple[Hashable, int]) -> None:
        """Forget an entry; a tensor's bytes are freed with the last entry holding it."""
        for t in self._entries.pop(entry_id).outputs:
            held = self._held[id(t)]
            held[1] -= 1
            if held[1] == 0:
                del self._held[id(t)]
                self.nbytes -= t.numel() * t.element_size()


def _fingerprint(model: nn.Module) -> tuple:
    """Storage and version counter of every parameter and buffer: changes whenever any of them does."""
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in (*model.parameters(), *model.buffers()))
