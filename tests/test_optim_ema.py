"""The weight EMA: YOLOv5's update, checked against values computed by hand."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.optim import ModelEMA


def test_ema_matches_a_hand_computed_update() -> None:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9999)
    expected, expected_mean = 1.0, 0.0  # the weight starts at 1, BatchNorm's running mean at 0
    for step, value in enumerate((3.0, -2.0, 5.0), start=1):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(value)
        model[1].num_batches_tracked.fill_(step)
        ema.update(model)
        d = 0.9999 * (1 - math.exp(-step / 2000))  # the ramp: tiny decay early, 0.9999 late
        expected = d * expected + (1 - d) * value
        expected_mean = d * expected_mean + (1 - d) * value
        assert math.isclose(ema.module[0].weight.item(), expected, rel_tol=1e-6)
        assert math.isclose(ema.module[1].running_mean.item(), expected_mean, rel_tol=1e-6, abs_tol=1e-7)
        # floating buffers (BatchNorm statistics) are averaged too, integer ones copied
        assert ema.module[1].num_batches_tracked.item() == step
    assert ema.updates == 3
    # after a long run the decay approaches 0.9999: one update moves the average by 1e-4 of the gap
    ema.updates = 100_000
    before = ema.module[0].weight.item()
    with torch.no_grad():
        model[0].weight.fill_(before + 1.0)
    ema.update(model)
    assert math.isclose(ema.module[0].weight.item() - before, 1 - 0.9999 * (1 - math.exp(-100_001 / 2000)),
                        rel_tol=1e-2)  # float32: a 1e-4 step on a value near 5 keeps ~3 digits


def test_ema_state_round_trips() -> None:
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.9)
    ema.update(model)
    other = ModelEMA(nn.Linear(2, 2), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    torch.testing.assert_close(other.module.weight, ema.module.weight)
