"""The shared-backbone model: one CSP-Darknet trunk feeding a YOLO detector and a view classifier.

The forward pass is split in two so the engine can cut the graph at the shared features
(``trainables/balancing/base.py``): ``trunk(images)`` returns the backbone's (P3, P4, P5) and
``heads(features)`` runs the neck + Detect and the view head on them. ``forward = heads ∘ trunk``.
The same class, with one task switched off, is the single-task baseline (det_only / cls_only) and
the YOLO-style classifier of the dual model, so every arm of the study runs the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from trainables.models.yolo import PAN, Backbone, Detect

LEVELS = ("p3", "p4", "p5")


class ViewHead(nn.Module):
    """A feature map (B, C, H, W) -> view logits (B, V): average-pool to a ``grid`` x ``grid`` layout,
    flatten, then a linear (or one-hidden-layer) classifier.

    Why a grid and not global average pooling: an echo view *is* a layout (four chambers in a 2x2
    arrangement, one long chamber over two small ones, one round chamber), and the probe's fan always
    has its apex at the top, so where things are carries the class. Global pooling throws the layout
    away and leaves the network to rebuild it in its channels, which from scratch takes hundreds of
    steps: measured on the synthetic default (cls_only, 5 epochs of 16 steps, AdamW 1e-3), global
    pooling ended at 0.30-0.70 view accuracy across runs, a 4 x 4 grid at 0.98. grid = 1 is global
    average pooling.

    hidden = 0: Dropout -> Linear. hidden > 0: Linear -> SiLU -> Dropout -> Linear. The linear head
    also takes the dropout (before its layer, as classifier heads usually do) so that ``cls_dropout``
    is never a silently ignored hyperparameter.
    """

    def __init__(self, channels: int, num_views: int, hidden: int = 0, dropout: float = 0.0, grid: int = 1) -> None:
        super().__init__()
        self.num_views = num_views
        self.grid = grid
        in_features = channels * grid * grid
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Linear(in_features, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, num_views)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_views))

    def forward(self, features: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(features, self.grid).flatten(1)  # (B, C * grid * grid)
        return self.net(pooled)  # (B, V)


class MultiTaskModel(nn.Module):
    """Detector and/or view classifier on one YOLOv5-style backbone.

    Images are (B, 3, H, W) floats with H, W divisible by 32. ``forward`` returns
    (det_outputs, cls_logits): det_outputs is a list of three raw tensors (B, A, H_l, W_l, 5 + nc)
    (None without the detector), cls_logits is (B, V) (None without the classifier).
    """

    def __init__(
        self,
        num_classes: int,
        num_views: int,
        depth_multiple: float,
        width_multiple: float,
        cls_hidden: int = 0,
        cls_dropout: float = 0.0,
        cls_level: str = "p5",
        cls_grid: int = 1,
        detect: bool = True,
        classify: bool = True,
    ) -> None:
        super().__init__()
        if not (detect or classify):
            raise ValueError("MultiTaskModel: at least one of detect / classify must be on")
        if cls_level not in LEVELS:
            raise ValueError(f"MultiTaskModel: cls_level={cls_level!r} is not one of {list(LEVELS)}")
        self.num_classes = num_classes
        self.num_views = num_views
        self.cls_level = LEVELS.index(cls_level)
        # the detector reads all three levels; a classifier alone stops at the level it pools
        self.backbone = Backbone(depth_multiple, width_multiple, levels=3 if detect else self.cls_level + 1)
        self.neck: PAN | None = None
        self.detect: Detect | None = None
        if detect:
            self.neck = PAN(self.backbone.out_channels, depth_multiple, width_multiple)
            self.detect = Detect(num_classes, self.neck.out_channels)
        self.view_head: ViewHead | None = None
        if classify:
            c = self.backbone.out_channels[self.cls_level]
            self.view_head = ViewHead(c, num_views, cls_hidden, cls_dropout, cls_grid)

    # ---- the split forward pass --------------------------------------------------------------
    def trunk(self, images: Tensor) -> tuple[Tensor, ...]:
        """(B, 3, H, W) -> backbone features (P3, P4, P5), each (B, C_l, H / s_l, W / s_l); a classify-only
        model's backbone stops at the level its view head reads."""
        return self.backbone(images)

    def heads(self, features: Sequence[Tensor]) -> tuple[list[Tensor] | None, Tensor | None]:
        """(P3, P4, P5) -> (det_outputs or None, cls_logits (B, V) or None)."""
        det = self.detect(self.neck(features)) if self.detect is not None else None
        logits = None
        if self.view_head is not None:
            logits = self.view_head(features[self.cls_level])  # (B, V)
        return det, logits

    def forward(self, images: Tensor) -> tuple[list[Tensor] | None, Tensor | None]:
        return self.heads(self.trunk(images))

    # ---- parameter groups --------------------------------------------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer shared by both tasks: what GradNorm takes gradient norms on.

        Our choice: the last backbone layer whose output both tasks read, i.e. the Conv block
        (conv weight + BatchNorm scale and shift) that produces the level the view head pools —
        the SPPF's output conv for "p5" (the backbone's very last layer), the final 1x1 conv of
        the P4 / P3 C3 stage for "p4" / "p3". Every layer after it is used by the detector only
        (the neck, and for p3 / p4 also the deeper backbone stages, whose inputs derive from it),
        so this is the deepest layer through which both tasks' gradients pass.
        [] when only one task is present (nothing to balance).
        """
        if self.detect is None or self.view_head is None:
            return []
        return list(self.backbone.level_output_layer(self.cls_level).parameters())

    def trunk_parameters(self) -> list[nn.Parameter]:
        """All backbone parameters: where gradient interference between the tasks is measured."""
        return list(self.backbone.parameters())

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """A partition of all parameters: "shared" (the backbone, when both tasks read it), "det"
        (neck + Detect), "cls" (view head). With one task, the backbone belongs to that task, as the
        dual model's backbones do; absent tasks get empty lists."""
        groups: dict[str, list[nn.Parameter]] = {"shared": [], "det": [], "cls": []}
        if self.detect is not None:
            groups["det"] = [*self.neck.parameters(), *self.detect.parameters()]
        if self.view_head is not None:
            groups["cls"] = list(self.view_head.parameters())
        backbone = list(self.backbone.parameters())
        if self.detect is not None and self.view_head is not None:
            groups["shared"] = backbone
        elif self.detect is not None:
            groups["det"] = backbone + groups["det"]
        else:
            groups["cls"] = backbone + groups["cls"]
        return groups

    def networks(self) -> dict[str, nn.Module]:
        """The networks that get an optimizer each: one for the whole shared model."""
        return {"main": self}
