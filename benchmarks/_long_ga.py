"""The committed long NSGA-II runs of issue 5's speed point, and their cost re-timed on this machine now.

Those runs took hours on machines of this kind that emulated faster or slower than this one may today, so
a ratio against their journaled seconds mixes sittings. `retime_ga` re-runs a sample of a run's own journaled
evaluations here, in this process, and a GA's time to its best *now* is its evaluations to its best times
that mean: the same-run ratio `paper_table.py --ga-long` and `search_cost.py` judge the speed point on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from _common import RESULTS, ROOT

GA_RECORDS = {"lenet": RESULTS / "ga_long_lenet" / "paper_table.json",
              "vgg": RESULTS / "ga_journal" / "paper_table.json",
              "resnet": RESULTS / "ga_journal_resnet" / "paper_table.json"}
# LeNet's 2-hour run kept no journal; its journaled rerun (`ga_journal_lenet/`, same settings and seed) retraced
# it, with the same best values at the same evaluation counts, so its evaluations stand in for the re-timing.
GA_JOURNALS = {"lenet": RESULTS / "ga_journal_lenet" / "ga_journal_lenet.jsonl",
               "vgg": RESULTS / "ga_journal" / "ga_journal_vgg.jsonl",
               "resnet": RESULTS / "ga_journal_resnet" / "ga_journal_resnet.jsonl"}
RETIME_WINDOWS, RETIME_LENGTH = 4, 3  # GA evaluations re-timed per model: 4 runs of 3 consecutive ones


def long_ga(model: str) -> dict[str, Any]:
    """The model's row of its long GA record, with the record's settings under ``"settings"``."""
    path = GA_RECORDS.get(model)
    if path is None:
        raise SystemExit(f"no long GA run for {model} (choose from {', '.join(GA_RECORDS)})")
    if not path.is_file():
        raise SystemExit(f"missing GA record {path} (see benchmarks/paper_table.py's docstring)")
    record = json.loads(path.read_text())
    return {**record["models"][model], "settings": record["settings"], "record": str(path.relative_to(ROOT))}


def seconds_to_reach(history: Sequence[Mapping[str, Any]], reduction_pct: float) -> float | None:
    """Wall time of the first generation whose best feasible reduction reaches `reduction_pct` (None: never)."""
    for h in history:
        if h["best_reduction_pct"] >= reduction_pct:
            return float(h["seconds"])
    return None


def seconds_to_best(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Wall time of the first generation at the GA's final best feasible reduction (its last improvement)."""
    return seconds_to_reach(history, history[-1]["best_reduction_pct"]) if history else None


def evaluations_at(history: Sequence[Mapping[str, Any]], seconds: float | None) -> int | None:
    """Evaluations the GA had made by the generation that ended at `seconds`."""
    if seconds is None:
        return None
    return next(int(h["evaluations"]) for h in history if float(h["seconds"]) >= seconds)


def retime_ga(model: str, upto: int, batch_size: int, windows: int = RETIME_WINDOWS, length: int = RETIME_LENGTH,
              ) -> dict[str, Any] | None:
    """Seconds per GA evaluation on this machine now, with the evaluator FAMES uses (same batch size, the same
    replay of quantized-layer outputs): `windows` runs of `length` consecutive evaluations of the model's GA
    journal (evenly spread over its first `upto`), each run preceded by its journaled predecessor (untimed:
    during the GA the replay store holds it), re-run in this process after a warm-up on 64 images (a long GA
    has built and cached the emulation plans of nearly every multiplier). None without a journal."""
    path = GA_JOURNALS.get(model)
    if path is None or not path.is_file():
        return None
    import torch
    from _common import DEFAULT_CHECKPOINT_DIR, load_reference, open_library

    from fames.emulation.api import approximate_
    from fames.selection.evaluate import evaluate_model, make_evaluator
    from fames.selection.genetic import read_journal

    header, entries, _ = read_journal(path)
    entries = entries[1:upto]  # the first is the exact baseline
    if len(entries) < length + 1:
        return None
    starts = np.unique(np.linspace(1, len(entries) - length, windows).round().astype(int))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ref = load_reference(model, DEFAULT_CHECKPOINT_DIR / f"{model}_mp.safetensors", 16, 0)
    library, _ = open_library(None)
    evaluator = make_evaluator(ref.data.val.x, ref.data.val.y, batch_size)
    today, journaled = [], []

    def assignment(entry: Mapping[str, Any]) -> dict[str, str]:
        return {layer: header["options"][j][c] for j, (layer, c) in
                enumerate(zip(header["layers"], entry["choice"], strict=True))}

    try:
        for start in starts:
            for i in range(start - 1, start + length):
                entry = entries[int(i)]
                approximate_(ref.model, assignment(entry), library)  # warm: plans of new multipliers are cached
                evaluate_model(ref.model, ref.data.val.x[:64], ref.data.val.y[:64], batch_size)
                began = time.perf_counter()
                approximate_(ref.model, assignment(entry), library)
                evaluator(ref.model)
                if i >= start:
                    today.append(time.perf_counter() - began)
                    journaled.append(float(entry["seconds"]))
    finally:
        approximate_(ref.model, {}, library)
        torch.set_num_threads(threads)
    return {"journal": str(path.relative_to(ROOT)), "sample": len(today), "batch_size": batch_size,
            "replay_share": evaluator.replay.replayed / max(evaluator.replay.calls, 1) if evaluator.replay else 0.0,
            "seconds_per_evaluation_now": float(np.mean(today)),
            "seconds_per_evaluation_journaled": float(np.mean(journaled))}
