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

from trainables.config import ModelConfig
from trainables.models.yolo import LEVEL_UNITS, PAN, Backbone, Detect

HEAD = ModelConfig()  # the view head's defaults (level, grid, hidden, dropout): the config is their one home

LEVELS = ("p3", "p4", "p5")


class ViewHead(nn.Module):
    """A feature map (B, C, H, W) -> view logits (B, V): average-pool to a ``grid`` x ``grid`` layout,
    flatten, then a linear (or one-hidden-layer) classifier.

    Why a grid and not global average pooling: an echo view *is* a layout (four chambers in a 2x2
    arrangement, one long chamber over two small ones, one round chamber), and the probe's fan always
    has its apex at the top, so where things are carries the class. Global pooling throws the layout
    away and leaves the network to rebuild it in its channels (measured against a grid:
    docs/benchmarks.md#view-head-grid). grid = 1 is global average pooling.

    hidden = 0: Dropout -> Linear. hidden > 0: Linear -> SiLU -> Dropout -> Linear. The linear head
    also takes the dropout (before its layer, as classifier heads usually do) so that ``cls_dropout``
    is never a silently ignored hyperparameter.
    """

    def __init__(self, channels: int, num_views: int, hidden: int = HEAD.cls_hidden, dropout: float = HEAD.cls_dropout,
                 grid: int = HEAD.cls_grid) -> None:
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


class ViewBranch(nn.Module):
    """The view task's own copy of the backbone units between the split and the level its head pools.

    ``backbone`` is a tail ``Backbone`` (built from the split's unit on), so its parameters are named
    ``classifier.backbone.<unit>...``: a shared checkpoint's ``backbone.<unit>...`` initialises it by
    name suffix and a dual checkpoint's classifier by exact name (trainables/models/transfer.py).
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        """The trunk's output at the split (or the images) -> the view level, (B, C_l, H / s_l, W / s_l)."""
        return self.backbone.run(x, self.backbone.first, self.backbone.end)[-1]


class MultiTaskModel(nn.Module):
    """Detector and/or view classifier on one YOLOv5-style backbone.

    Images are (B, 3, H, W) floats with H, W divisible by 32. ``forward`` returns
    (det_outputs, cls_logits): det_outputs is a list of three raw tensors (B, A, H_l, W_l, 5 + nc)
    (None without the detector), cls_logits is (B, V) (None without the classifier).

    ``shared_stages`` (two tasks only): how many backbone units (``UNITS``: stem, stage2, stage3 = P3,
    stage4 = P4, stage5, SPPF = P5) both tasks share, 0..L with L the units up to the view head's level
    (p3: 3, p4: 4, p5: 6); None is L, the fully shared model. The trunk runs the shared units once; the
    detector continues with its own remaining units (``backbone``, so its state_dict keys are the fully
    shared model's) and its neck, the view task with its own copy of the units up to its level
    (``classifier``, absent at L). At 0 nothing is shared: the parameters and FLOPs of the dual model
    with a YOLO classifier of this width.
    """

    def __init__(
        self,
        num_classes: int,
        num_views: int,
        depth_multiple: float,
        width_multiple: float,
        cls_hidden: int = HEAD.cls_hidden,
        cls_dropout: float = HEAD.cls_dropout,
        cls_level: str = HEAD.cls_level,
        cls_grid: int = HEAD.cls_grid,
        detect: bool = True,
        classify: bool = True,
        shared_stages: int | None = None,
    ) -> None:
        super().__init__()
        if not (detect or classify):
            raise ValueError("MultiTaskModel: at least one of detect / classify must be on")
        if cls_level not in LEVELS:
            raise ValueError(f"MultiTaskModel: cls_level={cls_level!r} is not one of {list(LEVELS)}")
        self.num_classes = num_classes
        self.num_views = num_views
        self.cls_level = LEVELS.index(cls_level)
        view_units = LEVEL_UNITS[self.cls_level]
        both = detect and classify
        if shared_stages is not None and not (both and 0 <= shared_stages <= view_units):
            raise ValueError(f"MultiTaskModel: shared_stages={shared_stages} needs both tasks and must be in "
                             f"[0, {view_units}] for cls_level={cls_level!r}")
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
        # units the trunk runs: the shared ones with two tasks, the whole backbone for one task
        self.shared_stages = (view_units if shared_stages is None else shared_stages) if both else 0
        self.trunk_units = self.shared_stages if both else self.backbone.end
        self.classifier: ViewBranch | None = None
        if both and self.shared_stages < view_units:  # built last: the rest initialises as in the shared model
            self.classifier = ViewBranch(Backbone(depth_multiple, width_multiple, levels=self.cls_level + 1,
                                                  first=self.shared_stages))
        # the units whose outputs the trunk hands on: the levels among its units, then its last unit
        self.taps = tuple(sorted({u - 1 for u in LEVEL_UNITS if u <= self.trunk_units} | (
            {self.trunk_units - 1} if self.trunk_units else set())))

    # ---- the split forward pass --------------------------------------------------------------
    def trunk(self, images: Tensor) -> tuple[Tensor, ...]:
        """(B, 3, H, W) -> the trunk's outputs: the feature levels among its units (P3, P4, P5 as far as
        it runs, each (B, C_l, H / s_l, W / s_l)) then, when it is not a level, its last unit's output.
        Two tasks: the units both share (nothing shared: the images themselves, which need no gradient,
        as in the dual model). One task: the whole backbone (its levels)."""
        if not self.trunk_units:
            return (images,)
        outputs = self.backbone.run(images, 0, self.trunk_units)
        return tuple(outputs[u] for u in self.taps)

    def heads(self, features: Sequence[Tensor]) -> tuple[list[Tensor] | None, Tensor | None]:
        """The trunk's outputs -> (det_outputs or None, cls_logits (B, V) or None): the detector's own
        units, neck and Detect; the view task's own units (after a split) and its head."""
        by_unit = dict(zip(self.taps, features, strict=True)) if self.trunk_units else {}
        x = features[-1]  # the input of the first unit after the trunk
        det = None
        if self.detect is not None:
            rest = self.backbone.run(x, self.trunk_units, self.backbone.end)
            by_unit.update(zip(range(self.trunk_units, self.backbone.end), rest, strict=True))
            det = self.detect(self.neck([by_unit[u - 1] for u in LEVEL_UNITS]))
        logits = None
        if self.view_head is not None:
            level = self.classifier(x) if self.classifier is not None else by_unit[LEVEL_UNITS[self.cls_level] - 1]
            logits = self.view_head(level)  # (B, V)
        return det, logits

    def forward(self, images: Tensor) -> tuple[list[Tensor] | None, Tensor | None]:
        return self.heads(self.trunk(images))

    # ---- parameter groups --------------------------------------------------------------------
    @property
    def both_tasks(self) -> bool:
        return self.detect is not None and self.view_head is not None

    def shared_parameters(self) -> list[nn.Parameter]:
        """The last layer shared by both tasks: what GradNorm takes gradient norms on.

        Our choice: the Conv block (conv weight + BatchNorm scale and shift) that produces the last
        shared unit's output, i.e. the trunk's output at the split — for the fully shared model the
        level the view head pools (the final 1x1 conv of the P4 C3 stage for "p4", the SPPF's output
        conv for "p5"). Every layer after it belongs to one task only, so this is the deepest layer
        through which both tasks' gradients pass. [] when only one task is present or nothing is
        shared (nothing to balance).
        """
        if not self.both_tasks or self.shared_stages == 0:
            return []
        return list(self.backbone.unit_output_layer(self.shared_stages - 1).parameters())

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The shared units' parameters (where gradient interference between the tasks is measured);
        a single-task model's whole backbone."""
        return self.backbone.unit_parameters(0, self.trunk_units)

    def view_modules(self) -> list[nn.Module]:
        """The modules only the view task uses (its own units after a split, its head): they learn at
        the view rate, ``optim.cls_lr``, as the dual model's classifier network does."""
        return [m for m in (self.classifier, self.view_head) if m is not None]

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """A partition of all parameters: "shared" (the shared units, when both tasks read them), "det"
        (the detector's own units + neck + Detect), "cls" (the view task's own units + view head). With
        one task, the backbone belongs to that task, as the dual model's backbones do; absent tasks get
        empty lists."""
        groups: dict[str, list[nn.Parameter]] = {"shared": [], "det": [], "cls": []}
        if self.detect is not None:
            groups["det"] = [*self.neck.parameters(), *self.detect.parameters()]
        groups["cls"] = [p for m in self.view_modules() for p in m.parameters()]
        shared = self.backbone.unit_parameters(0, self.shared_stages)
        own = self.backbone.unit_parameters(self.shared_stages, self.backbone.end)
        if self.both_tasks:
            groups["shared"] = shared
            groups["det"] = own + groups["det"]
        elif self.detect is not None:
            groups["det"] = shared + own + groups["det"]
        else:
            groups["cls"] = shared + own + groups["cls"]
        return groups

    def networks(self) -> dict[str, nn.Module]:
        """The networks that get an optimizer (and a gradient clip) each: one for a model that shares
        any unit; with nothing shared, the detector and the view branch apart, as in the dual model."""
        if self.both_tasks and self.shared_stages == 0:
            return {"det": nn.ModuleList([self.backbone, self.neck, self.detect]),
                    "cls": nn.ModuleList(self.view_modules())}
        return {"main": self}
