"""Precise BN: the re-estimated statistics are the exact averages over the calibration batches."""

from __future__ import annotations

import torch
from torch import nn

from trainables.batchnorm import recalibrate_batchnorm


def test_running_stats_become_the_exact_batch_averages():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(2))
    model.eval()
    model[0].running_mean.fill_(100.0)  # stale statistics from "training"
    batches = [torch.randn(4, 2, 3, 3) * 2 + 1, torch.randn(4, 2, 3, 3) * 3 - 1]
    assert recalibrate_batchnorm(model, batches) == 2
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches])  # (2 batches, C)
    variances = torch.stack([b.transpose(0, 1).reshape(2, -1).var(dim=1, unbiased=True) for b in batches])
    assert torch.allclose(model[0].running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(model[0].running_var, variances.mean(0), atol=1e-5)
    assert model[0].momentum == 0.1 and not model.training  # settings restored


def test_no_batchnorm_is_a_no_op():
    model = nn.Linear(3, 2)
    assert recalibrate_batchnorm(model, [torch.randn(2, 3)]) == 0
