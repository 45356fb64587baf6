"""YOLOv5-style building blocks (the v6.x layout), written for this project.

The layer plan follows the published YOLOv5 v6 architecture (a 6x6 stride-2 stem, CSP "C3" stages,
a fast spatial pyramid pool, a PAN neck and an anchor-based head with three anchors per level at
strides 8/16/32), scaled by a depth and a width multiple. Nothing here is copied from the YOLOv5 or
Ultralytics sources (AGPL); the code is our own.

Every feature map is (B, C, H, W); any input size divisible by 32 works, since each level is an
exact power-of-two subsampling of the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

STRIDES = (8, 16, 32)
# YOLOv5's default anchors, (width, height) in input pixels, three per level (P3, P4, P5).
DEFAULT_ANCHORS = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)
# The nominal training size and object count behind the objectness prior (see Detect._init_biases).
PRIOR_IMGSZ = 640
PRIOR_OBJECTS = 8


def scale_width(channels: int, width_multiple: float, divisor: int = 8) -> int:
    """Channels of a layer after width scaling, rounded up to a multiple of ``divisor`` (GPU-friendly)."""
    return max(divisor, math.ceil(channels * width_multiple / divisor) * divisor)


def scale_depth(repeats: int, depth_multiple: float) -> int:
    """Repeats of a C3 stage after depth scaling: rounded to nearest, at least 1.

    Rounding (not ceil) reproduces every official YOLOv5 preset, e.g. m = 0.67: 3 -> 2, 9 -> 6; a
    ceiling would give 3 and 7. For the n/s presets (0.33) both give 1, 2, 3.
    """
    return max(1, round(repeats * depth_multiple))


BN_MOMENTUM = 0.1


class Conv(nn.Module):
    """Conv2d (no bias: BatchNorm has one) + BatchNorm2d + SiLU; 'same' padding for odd kernels."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, bias=False)
        # YOLOv5's small eps, but PyTorch's default momentum 0.1 rather than YOLOv5's 0.03: a study's
        # trials are short (tens to hundreds of steps), and with 0.03 the running statistics still
        # lag the weights at validation time (measured: docs/benchmarks.md#batchnorm-momentum).
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))  # (B, c_out, H/s, W/s)


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with a residual connection when asked and the shapes allow it."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, expansion: float = 1.0) -> None:
        super().__init__()
        hidden = int(c_out * expansion)
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(hidden, c_out, 3)
        self.add = shortcut and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))  # (B, c_out, H, W)
        return x + y if self.add else y


class C3(nn.Module):
    """CSP stage: one branch runs ``n`` bottlenecks, the other is a plain 1x1; a 1x1 fuses both."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        hidden = c_out // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(c_in, hidden, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut) for _ in range(n)))
        self.cv3 = Conv(2 * hidden, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        both = torch.cat([self.m(self.cv1(x)), self.cv2(x)], dim=1)  # (B, 2*hidden, H, W)
        return self.cv3(both)  # (B, c_out, H, W)


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained k x k max-pools (receptive fields k, 2k-1, 3k-2)
    concatenated with their input, equivalent to parallel pools of those sizes at a third of the cost."""

    def __init__(self, c_in: int, c_out: int, k: int = 5) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(4 * hidden, c_out, 1)
        self.pool = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)  # (B, hidden, H, W)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        y3 = self.pool(y2)
        return self.cv2(torch.cat([x, y1, y2, y3], dim=1))  # (B, c_out, H, W)


# The backbone's units, counted from the input; a split of the shared model (``model.shared_stages``)
# falls between two of them. LEVEL_UNITS[l]: how many units it takes to produce level l (P3, P4, P5).
UNITS = ("stem", "stage2", "stage3", "stage4", "stage5", "sppf")
LEVEL_UNITS = (3, 4, 6)


class Backbone(nn.Module):
    """CSP-Darknet (YOLOv5 v6): returns (P3, P4, P5) at strides 8, 16, 32 — or fewer levels.

    Base channels 64, 128, 256, 512, 1024 and C3 repeats 3, 6, 9, 3 are scaled by the multiples.
    ``levels`` = 3 builds everything (stage 5 + SPPF give P5); 2 stops after P4 and 1 after P3, so a
    classifier that reads P4 carries no stage 5 / SPPF whose output nothing would use (dead weights
    that count in parameters and FLOPs and never learn). ``out_channels`` lists the built levels.

    ``first`` > 0 builds only the units from ``first`` on (``UNITS``): the tail of a backbone whose
    first units live elsewhere (the view task's own copy of the units after a split, whose input is
    the shared trunk's output); its ``forward`` then takes that unit's input and returns the levels
    its own units produce.
    """

    def __init__(self, depth_multiple: float, width_multiple: float, levels: int = 3, first: int = 0) -> None:
        super().__init__()
        if levels not in (1, 2, 3):
            raise ValueError(f"Backbone: levels={levels} must be 1, 2 or 3")
        end = LEVEL_UNITS[levels - 1]
        if not 0 <= first <= end:
            raise ValueError(f"Backbone: first={first} must be in [0, {end}]")
        c1, c2, c3, c4, c5 = (scale_width(c, width_multiple) for c in (64, 128, 256, 512, 1024))
        n1, n2, n3, n4 = (scale_depth(n, depth_multiple) for n in (3, 6, 9, 3))
        builders = (
            lambda: Conv(3, c1, k=6, s=2, p=2),  # stride 2
            lambda: nn.Sequential(Conv(c1, c2, 3, 2), C3(c2, c2, n1)),  # stride 4
            lambda: nn.Sequential(Conv(c2, c3, 3, 2), C3(c3, c3, n2)),  # stride 8  -> P3
            lambda: nn.Sequential(Conv(c3, c4, 3, 2), C3(c4, c4, n3)),  # stride 16 -> P4
            lambda: nn.Sequential(Conv(c4, c5, 3, 2), C3(c5, c5, n4)),  # stride 32
            lambda: SPPF(c5, c5, 5),  # -> P5
        )
        # in UNITS order, so the state_dict keys and the initialisation order are the full backbone's
        for i, (name, build) in enumerate(zip(UNITS, builders, strict=True)):
            setattr(self, name, build() if first <= i < end else None)
        self.first, self.end = first, end
        self.out_channels = (c3, c4, c5)[:levels]

    def units(self) -> list[nn.Module | None]:
        """The six units in order (None where not built)."""
        return [getattr(self, name) for name in UNITS]

    def run(self, x: Tensor, start: int, stop: int) -> list[Tensor]:
        """Units [start, stop) on ``x`` (the input of unit ``start``: the images for 0) -> each unit's
        output in order, (B, C_u, H / s_u, W / s_u)."""
        outputs = []
        for unit in self.units()[start:stop]:
            x = unit(x)
            outputs.append(x)
        return outputs

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outputs = self.run(x, self.first, self.end)  # stem: (B, c1, H/2, W/2) ... SPPF: (B, c5, H/32, W/32)
        return tuple(outputs[u - 1 - self.first] for u in LEVEL_UNITS if self.first < u <= self.end)

    def unit_output_layer(self, unit: int) -> nn.Module:
        """The Conv block (conv + BatchNorm) that produces unit ``unit``'s output: the stem itself, a
        stage's final C3 1x1 (``cv3``), the SPPF's output conv (``cv2``)."""
        module = self.units()[unit]
        if module is None:
            raise ValueError(f"Backbone: unit {unit} ({UNITS[unit]}) is not built here")
        if isinstance(module, Conv):
            return module
        return module.cv2 if isinstance(module, SPPF) else module[-1].cv3

    def level_output_layer(self, level: int) -> nn.Module:
        """The last layer producing feature level ``level`` (0 = P3, 1 = P4, 2 = P5)."""
        return self.unit_output_layer(LEVEL_UNITS[level] - 1)

    def unit_parameters(self, start: int, stop: int) -> list[nn.Parameter]:
        """The parameters of units [start, stop), in order."""
        return [p for unit in self.units()[start:stop] if unit is not None for p in unit.parameters()]


class PAN(nn.Module):
    """YOLOv5's neck: a top-down path (upsample + concat) then a bottom-up path (stride-2 conv + concat).

    channels: the backbone's (P3, P4, P5) channels. Returns three maps with ``out_channels`` =
    (256, 512, 1024) x width at strides 8, 16, 32. Its C3 blocks have no residual shortcut.
    """

    def __init__(self, channels: Sequence[int], depth_multiple: float, width_multiple: float) -> None:
        super().__init__()
        b3, b4, b5 = channels
        c3, c4, c5 = (scale_width(c, width_multiple) for c in (256, 512, 1024))
        n = scale_depth(3, depth_multiple)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # top-down
        self.lat5 = Conv(b5, c4, 1)
        self.td4 = C3(c4 + b4, c4, n, shortcut=False)
        self.lat4 = Conv(c4, c3, 1)
        self.td3 = C3(c3 + b3, c3, n, shortcut=False)
        # bottom-up
        self.down3 = Conv(c3, c3, 3, 2)
        self.bu4 = C3(c3 + c3, c4, n, shortcut=False)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bu5 = C3(c4 + c4, c5, n, shortcut=False)
        self.out_channels = (c3, c4, c5)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        p3, p4, p5 = features
        l5 = self.lat5(p5)  # (B, c4, H/32, W/32)
        t4 = self.td4(torch.cat([self.up(l5), p4], dim=1))  # (B, c4, H/16, W/16)
        l4 = self.lat4(t4)  # (B, c3, H/16, W/16)
        n3 = self.td3(torch.cat([self.up(l4), p3], dim=1))  # (B, c3, H/8, W/8)
        n4 = self.bu4(torch.cat([self.down3(n3), l4], dim=1))  # (B, c4, H/16, W/16)
        n5 = self.bu5(torch.cat([self.down4(n4), l5], dim=1))  # (B, c5, H/32, W/32)
        return n3, n4, n5


class Detect(nn.Module):
    """Anchor-based head: one 1x1 conv per level predicting, for each of A anchors and each cell,
    (tx, ty, tw, th, objectness, class logits).

    anchors: (L, A, 2) buffer of anchor (w, h) in input pixels; ``strides``: (8, 16, 32).
    """

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int],
        anchors: Sequence[Sequence[Sequence[float]]] = DEFAULT_ANCHORS,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_outputs = 5 + num_classes
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # (L, A, 2)
        self.num_levels, self.num_anchors = self.anchors.shape[:2]
        if self.num_levels != len(channels) or self.num_levels != len(STRIDES):
            raise ValueError(f"Detect: {len(channels)} feature levels and {self.num_levels} anchor levels")
        self.strides = STRIDES
        self.convs = nn.ModuleList(nn.Conv2d(c, self.num_anchors * self.num_outputs, 1) for c in channels)
        self._init_biases()

    def _init_biases(self) -> None:
        """Start from sensible priors instead of p = 0.5 everywhere (which floods early training with
        false positives and huge objectness gradients).

        With a logit b, p = sigmoid(b) ≈ e^b when p is small, so b = log(p) sets a prior p.
        - Objectness: a 640-px image has about PRIOR_OBJECTS = 8 objects and (640 / s)^2 cells at
          stride s, so a cell holds an object with probability ≈ 8 / (640 / s)^2 -> b = log of that.
        - Classes: spread a total probability of about 0.6 over the classes, p ≈ 0.6 / (nc - 0.99);
          the -0.99 keeps the denominator positive (0.01) for a single class, where the class score
          then starts near 1 and objectness alone decides.
        """
        for conv, stride in zip(self.convs, self.strides, strict=True):
            bias = conv.bias.detach().view(self.num_anchors, self.num_outputs)  # (A, 5 + nc)
            bias[:, 4] += math.log(PRIOR_OBJECTS / (PRIOR_IMGSZ / stride) ** 2)
            bias[:, 5:] += math.log(0.6 / (self.num_classes - 0.99))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """features: L maps (B, C_l, H_l, W_l) -> L raw tensors (B, A, H_l, W_l, 5 + nc)."""
        outputs = []
        for conv, x in zip(self.convs, features, strict=True):
            y = conv(x)  # (B, A * (5 + nc), H, W)
            b, _, h, w = y.shape
            outputs.append(y.view(b, self.num_anchors, self.num_outputs, h, w).permute(0, 1, 3, 4, 2))
        return [o.contiguous() for o in outputs]

    def decode(self, outputs: Sequence[Tensor]) -> Tensor:
        """Raw outputs -> (B, N, 5 + nc) rows (cx, cy, w, h in pixels, objectness prob, class probs).

        N = A * Σ_l H_l W_l, levels in order, each level in (anchor, y, x) order. YOLOv5 v6's box
        parameterisation: centre = (2σ(t) - 0.5 + cell) * stride (a centre may lie up to half a cell
        outside its cell, which is why targets are also assigned to neighbouring cells), size =
        (2σ(t))^2 * anchor (bounded by 4x the anchor, which is why anchors match targets only within
        a ratio ``anchor_t`` = 4).
        """
        rows = []
        for level, out in enumerate(outputs):
            b, a, h, w, _ = out.shape
            p = out.float().sigmoid()  # (B, A, H, W, 5 + nc)
            ys, xs = torch.meshgrid(
                torch.arange(h, device=p.device), torch.arange(w, device=p.device), indexing="ij"
            )
            cell = torch.stack([xs, ys], dim=-1).to(p.dtype)  # (H, W, 2) as (x, y)
            stride = self.strides[level]
            xy = (p[..., :2] * 2 - 0.5 + cell) * stride  # (B, A, H, W, 2)
            anchor = self.anchors[level].view(1, a, 1, 1, 2).to(p.dtype)
            wh = (p[..., 2:4] * 2) ** 2 * anchor  # (B, A, H, W, 2)
            rows.append(torch.cat([xy, wh, p[..., 4:]], dim=-1).view(b, -1, self.num_outputs))
        return torch.cat(rows, dim=1)  # (B, N, 5 + nc)
