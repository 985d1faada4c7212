"""The validation evaluator: parts of the split and losses agree with PyTorch's own layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fames.selection.evaluate import evaluate_model, make_evaluator


def test_evaluator_parts_and_losses_match_a_plain_forward_pass() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.randn(50, 6), torch.randint(0, 4, (50,))
    with torch.no_grad():
        logits = model(x)
    want_correct = (logits.argmax(1) == y).numpy()
    want_loss = F.cross_entropy(logits, y, reduction="none").double().numpy()
    ev = make_evaluator(x, y, batch_size=7)
    assert ev.accepts_part and len(ev) == 50
    np.testing.assert_array_equal(ev(model), want_correct)
    np.testing.assert_array_equal(ev(model, part=slice(10, 23)), want_correct[10:23])
    res = ev.results(model, part=slice(0, 20))
    np.testing.assert_array_equal(res.correct, want_correct[:20])
    np.testing.assert_allclose(res.loss, want_loss[:20], rtol=1e-5)
    assert res.accuracy == pytest.approx(100 * want_correct[:20].mean())
    with pytest.raises(ValueError, match="differ in length"):
        evaluate_model(model, x, y[:-1])
