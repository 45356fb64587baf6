"""Per-convolution profile of one training step: where time stops following FLOPs.

    python -m study.bench train --profile [--sizes s] [--imgsz 320] [--batch 16]

For each architecture, one ``Learner.step`` (forward, losses, balancer backward, optimizer step)
runs under ``torch.profiler`` (CPU activity: on a GPU the times would be the host's, so the bench
profiles the CPU only) with input shapes recorded. Every convolution's forward and backward events
are matched to their shapes; a convolution's forward FLOPs come from its shapes (a multiply-add
counts as 2) and its backward counts one forward's worth per gradient it computed (input, weight:
the first layer needs no input gradient). The rows group convolutions by input channels and spatial
size: the GFLOP/s each group reaches against the best group measured in the run shows which layers
run below this machine's convolution throughput, and the share of the step's time they take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.profiler import ProfilerActivity, profile


@dataclass
class ConvGroup:
    """Convolutions of one input shape class: C_in x H (the batch is the same for all)."""

    channels: int
    size: int
    seconds: float = 0.0
    gflops: float = 0.0

    @property
    def gflops_per_s(self) -> float:
        return self.gflops / self.seconds if self.seconds > 0 else float("nan")


def conv_forward_gflops(input_shape: list[int], weight_shape: list[int], stride: int, padding: int) -> float:
    """Forward GFLOPs of one 2-D convolution from its shapes: input (B, C, H, W), weight
    (O, C/groups, kh, kw), square stride and padding; a multiply-add counts as 2."""
    b, _, h, w = input_shape
    o, c_per_group, kh, kw = weight_shape
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (w + 2 * padding - kw) // stride + 1
    return 2.0 * b * o * h_out * w_out * c_per_group * kh * kw / 1e9


def profile_step(step: Any) -> dict[tuple[int, int], ConvGroup]:
    """Run ``step()`` once under the profiler; its convolutions grouped by (C_in, H) of their input.

    ``aten::convolution`` is one event per convolution whatever the backend below it (its time
    includes theirs); ``aten::convolution_backward`` computes the input gradient and/or the weight
    gradient (its output mask), each as many FLOPs as the forward."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    groups: dict[tuple[int, int], ConvGroup] = {}
    for event in prof.events():
        shapes, args = event.input_shapes, event.concrete_inputs
        if event.name == "aten::convolution":  # (input, weight, bias, stride, padding, ...)
            inp, weight, stride, padding, passes = shapes[0], shapes[1], args[3], args[4], 1
        elif event.name == "aten::convolution_backward":  # (grad_out, input, weight, bias_sizes, stride, padding,
            inp, weight, stride, padding = shapes[1], shapes[2], args[4], args[5]  # ..., output_mask)
            passes = int(bool(args[10][0])) + int(bool(args[10][1]))
        else:
            continue
        if len(inp) != 4 or len(weight) != 4:
            continue
        group = groups.setdefault((inp[1], inp[2]), ConvGroup(channels=inp[1], size=inp[2]))
        group.seconds += event.cpu_time_total / 1e6
        group.gflops += passes * conv_forward_gflops(inp, weight, int(stride[0]), int(padding[0]))
    return groups


def table(name: str, groups: dict[tuple[int, int], ConvGroup], step_s: float, best: float) -> list[dict[str, Any]]:
    """One row per group, largest time first: its share of the step, its GFLOP/s, and that against ``best``."""
    rows = []
    for (channels, size), g in sorted(groups.items(), key=lambda kv: -kv[1].seconds):
        rows.append({"bench": "train-profile", "arch": name, "c_in": channels, "hw": size,
                     "seconds": round(g.seconds, 4), "share_of_step": round(g.seconds / step_s, 3),
                     "gflops": round(g.gflops, 3), "gflops_per_s": round(g.gflops_per_s, 2),
                     "vs_best": round(g.gflops_per_s / best, 2) if best > 0 else None})
    return rows


def summarize(by_arch: dict[str, dict[tuple[int, int], ConvGroup]]) -> dict[str, dict[str, float]]:
    """Per architecture: convolution seconds, GFLOPs and the time-weighted GFLOP/s of all its convolutions."""
    out = {}
    for arch, groups in by_arch.items():
        seconds = sum(g.seconds for g in groups.values())
        gflops = sum(g.gflops for g in groups.values())
        out[arch] = {"conv_s": seconds, "conv_gflops": gflops, "gflops_per_s": gflops / seconds if seconds else 0.0}
    return out


def best_throughput(by_arch: dict[str, dict[tuple[int, int], ConvGroup]], min_share: float = 0.02) -> float:
    """This machine's measured convolution throughput: the best GFLOP/s of any group that holds at
    least ``min_share`` of its architecture's convolution time (tiny groups time too noisily)."""
    best = 0.0
    for groups in by_arch.values():
        total = sum(g.seconds for g in groups.values()) or 1.0
        for g in groups.values():
            if g.seconds / total >= min_share:
                best = max(best, g.gflops_per_s)
    return best
