"""The per-convolution profile of `bench train --profile`: FLOPs from shapes, checked by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from study.benchmarks.train_profile import conv_forward_gflops, profile_step


def test_conv_forward_gflops_by_hand():
    # 3x3, stride 2, pad 1 on (2, 3, 32, 32) -> (2, 8, 16, 16): 2 * 2*8*16*16 * 3*3*3 = 221,184 FLOPs
    assert conv_forward_gflops([2, 3, 32, 32], [8, 3, 3, 3], stride=2, padding=1) == pytest.approx(221_184 / 1e9)
    # depthwise 3x3 (groups = 8, weight (8, 1, 3, 3)) on (1, 8, 10, 10): 2 * 8*10*10 * 9 = 14,400
    assert conv_forward_gflops([1, 8, 10, 10], [8, 1, 3, 3], stride=1, padding=1) == pytest.approx(14_400 / 1e9)


def test_profile_counts_forward_and_the_backward_passes_it_ran():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 8, 1))
    x = torch.randn(2, 3, 32, 32)
    groups = profile_step(lambda: net(x).sum().backward())
    first, second = groups[(3, 32)], groups[(8, 16)]
    # the first conv's input needs no gradient: forward + weight gradient; the second: forward + both
    assert first.gflops == pytest.approx(2 * 221_184 / 1e9)
    assert second.gflops == pytest.approx(3 * (2 * 2 * 8 * 16 * 16 * 8) / 1e9)
    assert first.seconds > 0 and second.seconds > 0
