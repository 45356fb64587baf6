"""Efficiency helpers on a tiny model whose parameters and FLOPs are counted by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.metrics import efficiency


def tiny() -> nn.Sequential:
    # Conv 3->8, 3x3, padding 1 on 8x8: 8*3*3*3 + 8 = 224 parameters, 8*8*8 = 512 outputs of 27
    # multiply-adds each. Linear 512 -> 10: 5120 + 10 = 5130 parameters, 5120 multiply-adds.
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


class TwoTasks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = tiny()

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"shared": list(self.body[0].parameters()), "det": list(self.body[2].parameters()), "cls": []}


def test_parameter_counts_by_hand() -> None:
    assert efficiency.count_parameters(tiny()) == 224 + 5130
    counts = efficiency.parameter_counts(TwoTasks())
    assert counts == {"total": 5354, "shared": 224, "det": 5130, "cls": 0}
    assert efficiency.parameter_counts(TwoTasks().task_parameters()) == counts
    assert efficiency.parameter_counts(tiny()) == {"total": 5354}


def test_shared_tensors_count_once() -> None:
    lin = nn.Linear(4, 4)  # 20 parameters, used twice
    assert efficiency.count_parameters(nn.Sequential(lin, lin)) == 20
    assert efficiency.parameter_counts({"a": list(lin.parameters()), "b": list(lin.parameters())})["total"] == 20


def test_gflops_by_hand_and_mode_restored() -> None:
    model = tiny().train()
    gflops = efficiency.forward_gflops(model, 8, "cpu")
    assert gflops == pytest.approx(2 * (512 * 27 + 5120) / 1e9)  # a multiply-add is 2 FLOPs
    assert model.training
    conv = nn.Conv2d(3, 4, 1)  # non-square input: 4 * 6 * 10 outputs of 3 multiply-adds
    assert efficiency.forward_gflops(conv, (6, 10), "cpu") == pytest.approx(2 * 240 * 3 / 1e9)


def test_latency_is_per_image_and_restores_mode() -> None:
    model = tiny().train()
    ms = efficiency.inference_latency_ms(model, 8, 4, "cpu", warmup=1, repeats=3)
    assert math.isfinite(ms) and ms > 0
    assert model.training


def test_cpu_peak_memory_sees_a_large_allocation() -> None:
    if not efficiency.reset_peak_memory("cpu"):
        pytest.skip("this platform cannot reset the process's peak RSS")
    before = efficiency.peak_memory_mb("cpu")
    # 96 MiB, written so the pages are resident: above glibc's largest dynamic mmap threshold (32 MiB), so
    # it gets fresh pages even after earlier tests left freed, still-resident heap behind (32 MiB did not)
    big = torch.ones(96 * 2**20 // 4)
    del big
    assert efficiency.peak_memory_mb("cpu") >= before + 90


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_memory_and_latency() -> None:
    efficiency.reset_peak_memory("cuda")
    big = torch.ones(64 * 2**20 // 4, device="cuda")  # 64 MiB
    del big
    assert efficiency.peak_memory_mb("cuda") >= 64
    efficiency.reset_peak_memory("cuda")
    assert efficiency.peak_memory_mb("cuda") < 64
    model = tiny().cuda()
    assert efficiency.forward_gflops(model, 8, "cuda") == pytest.approx(2 * (512 * 27 + 5120) / 1e9)
    assert efficiency.inference_latency_ms(model, 8, 32, "cuda") > 0
