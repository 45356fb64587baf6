"""The task losses: YOLOv5's detection loss and the view cross-entropy.

Every part is a *mean* (never multiplied by the batch size, unlike YOLOv5's training script), so
the detection and view losses have comparable scales whatever the batch, and a balancer sees the
same numbers at batch 8 and 64. The algorithm follows YOLOv5's training recipe (target assignment
by anchor shape ratio plus neighbouring cells, CIoU box loss, IoU-valued objectness, per-level
objectness balance); the code is our own, not YOLOv5's (AGPL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, complete_box_iou_loss

from trainables.config import LossConfig

# Objectness weight per level (P3, P4, P5): the fine level has 4x the cells of the next, so its
# mean BCE is smaller per cell; these weights keep the levels' contributions comparable.
OBJ_BALANCE = (4.0, 1.0, 0.4)
# Smallest predicted box side in grid units: far above float32 rounding at the |x| <= 1.5 where a
# cell's predicted centre lies (~1e-7), far below any real object (1e-6 cells ~ 1e-5 pixels).
MIN_WH = 1e-6


@dataclass
class LevelTargets:
    """The targets assigned to one output level; n = number of (target, anchor, cell) assignments.

    batch, anchor, gy, gx: (n,) long indices into the level's (B, A, H, W) output.
    cls: (n,) long class of the target.
    box: (n, 4) target (x, y, w, h) in grid units, (x, y) relative to the cell's top-left corner
        (in [-0.5, 1.5], the range the decoded centre can reach).
    anchor_wh: (n, 2) the assigned anchor's (w, h) in grid units.
    """

    batch: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    cls: Tensor
    box: Tensor
    anchor_wh: Tensor


def build_targets(
    targets: Tensor,
    anchors: Tensor,
    strides: Sequence[int],
    grid_shapes: Sequence[tuple[int, int]],
    anchor_t: float = 4.0,
) -> list[LevelTargets]:
    """Assign each target box to anchors and cells, level by level (YOLOv5's rule).

    targets: (K, 6) rows [batch_index, class, x1, y1, x2, y2] in input pixels.
    anchors: (L, A, 2) anchor (w, h) in input pixels; strides: L strides; grid_shapes: L (H, W).

    At each level a target is matched to every anchor whose shape is within a factor ``anchor_t``
    in both width and height (max(r, 1/r) < anchor_t for r = target / anchor), because the decoded
    size (2σ)^2 * anchor cannot exceed 4x the anchor. A matched target goes to the cell holding its
    centre and, because a decoded centre may lie up to half a cell outside its cell, also to the
    horizontal and the vertical neighbour nearest the centre: the left cell when the centre is in
    the left half of its cell, the right cell when in the right half (none at exactly 0.5), same
    for up/down — neighbours outside the grid are skipped. So up to 3 cells per (target, anchor),
    which triples the positives and speeds up training.
    """
    device = anchors.device
    targets = targets.to(device=device, dtype=torch.float32)
    result = []
    for level, (stride, (h, w)) in enumerate(zip(strides, grid_shapes, strict=True)):
        boxes = targets[:, 2:6] / stride  # (K, 4) xyxy in grid units
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (K, 2) as (x, y)
        size = boxes[:, 2:] - boxes[:, :2]  # (K, 2)
        anchor_wh = anchors[level].float() / stride  # (A, 2)
        ratio = size[:, None, :] / anchor_wh[None]  # (K, A, 2)
        match = torch.maximum(ratio, 1 / ratio).amax(dim=-1) < anchor_t  # (K, A)
        k, a = match.nonzero(as_tuple=True)  # (M,), (M,)
        c = centre[k]  # (M, 2)
        frac = c - c.floor()  # (M, 2)
        limit = torch.tensor([w, h], device=device, dtype=c.dtype)
        # candidate cell offsets (dx, dy) and when each applies
        offsets = (
            ((0, 0), torch.ones_like(frac[:, 0], dtype=torch.bool)),
            ((-1, 0), (frac[:, 0] < 0.5) & (c[:, 0] > 1)),
            ((0, -1), (frac[:, 1] < 0.5) & (c[:, 1] > 1)),
            ((1, 0), (frac[:, 0] > 0.5) & (limit[0] - c[:, 0] > 1)),
            ((0, 1), (frac[:, 1] > 0.5) & (limit[1] - c[:, 1] > 1)),
        )
        rows, cells = [], []
        for (dx, dy), use in offsets:
            idx = use.nonzero(as_tuple=True)[0]  # (m,)
            rows.append(idx)
            shift = torch.tensor([dx, dy], device=device, dtype=c.dtype)
            cells.append(c[idx].floor() + shift)  # (m, 2)
        rows_t = torch.cat(rows)  # (n,)
        cell = torch.cat(cells)  # (n, 2)
        # a centre on or beyond the image border still gets a cell inside the grid
        cell = torch.minimum(cell.clamp(min=0), limit - 1)
        kk, aa = k[rows_t], a[rows_t]
        result.append(
            LevelTargets(
                batch=targets[kk, 0].long(),
                anchor=aa,
                gy=cell[:, 1].long(),
                gx=cell[:, 0].long(),
                cls=targets[kk, 1].long(),
                box=torch.cat([centre[kk] - cell, size[kk]], dim=1),  # (n, 4)
                anchor_wh=anchor_wh[aa],  # (n, 2)
            )
        )
    return result


def detection_loss(
    det_outputs: Sequence[Tensor],
    targets: Tensor,
    anchors: Tensor,
    strides: Sequence[int],
    cfg: LossConfig,
) -> dict[str, Tensor]:
    """YOLOv5's detection loss, as means with the gains of ``cfg`` applied (rescaled for the class
    count, image size and level count first when ``cfg.gain_scaling == "yolov5"``).

    det_outputs: L raw tensors (B, A, H_l, W_l, 5 + nc) from ``Detect.forward``.
    targets: (K, 6) rows [batch_index, class, x1, y1, x2, y2] in input pixels (K may be 0).
    anchors: (L, A, 2) in pixels; strides: L strides.
    Returns {"box", "obj", "cls"}, each a scalar on the graph of ``det_outputs`` (a part with no
    positives is an exact 0 that still back-propagates, so an image without objects is fine):
    - box: Σ_l mean over level l's assignments of (1 - CIoU) (torchvision's complete_box_iou_loss);
    - obj: Σ_l OBJ_BALANCE[l] * mean over all (image, anchor, cell) of the BCE between the
      objectness logit and the detached IoU of that slot's prediction (0 where nothing is assigned),
      so objectness learns to predict box quality, not just presence;
    - cls: Σ_l mean BCE of the class logits against one-hot targets over level l's assignments;
      always 0 for a single class, where objectness alone carries the score.
    """
    grid_shapes = [(o.shape[2], o.shape[3]) for o in det_outputs]
    if cfg.gain_scaling == "yolov5":
        imgsz = max(grid_shapes[0]) * strides[0]  # the input's longer side
        cfg = yolov5_scaled_gains(cfg, det_outputs[0].shape[-1] - 5, imgsz, len(det_outputs))
    anchors = anchors.to(det_outputs[0].device)
    assigned = build_targets(targets, anchors, strides, grid_shapes, cfg.anchor_t)
    num_classes = det_outputs[0].shape[-1] - 5
    zero = sum(o.sum() for o in det_outputs) * 0.0  # an exact 0 attached to every output
    box, obj, cls = zero, zero, zero
    for level, (out, t) in enumerate(zip(det_outputs, assigned, strict=True)):
        out = out.float()  # bf16 autocast outputs: compute the loss in float32
        b, a, h, w, _ = out.shape
        tobj = torch.zeros((b, a, h, w), device=out.device)  # (B, A, H, W)
        if t.batch.numel():
            p = out[t.batch, t.anchor, t.gy, t.gx]  # (n, 5 + nc)
            pxy = p[:, :2].sigmoid() * 2 - 0.5  # (n, 2) relative to the cell
            # + MIN_WH: a saturated sigmoid gives a width that vanishes next to the centre coordinate,
            # x2 - x1 rounds to 0 and CIoU's aspect term atan(w / h) becomes 0 / 0 = NaN
            pwh = (p[:, 2:4].sigmoid() * 2) ** 2 * t.anchor_wh + MIN_WH  # (n, 2) grid units
            pbox = box_convert(torch.cat([pxy, pwh], dim=1), "cxcywh", "xyxy")  # (n, 4)
            tbox = box_convert(t.box, "cxcywh", "xyxy")  # (n, 4)
            per_box = complete_box_iou_loss(pbox, tbox, reduction="none")  # (n,) = 1 - CIoU
            box = box + per_box.mean()
            iou = (1 - per_box).detach().clamp(min=0)  # (n,) CIoU, negative when far off
            # several targets may share one slot: keep the best IoU (deterministic, unlike a write)
            slot = ((t.batch * a + t.anchor) * h + t.gy) * w + t.gx  # (n,)
            tobj.view(-1).scatter_reduce_(0, slot, iou, reduce="amax")
            if num_classes > 1:
                onehot = F.one_hot(t.cls, num_classes).to(p.dtype)  # (n, nc)
                cls = cls + F.binary_cross_entropy_with_logits(p[:, 5:], onehot)
        obj = obj + OBJ_BALANCE[level] * F.binary_cross_entropy_with_logits(out[..., 4], tobj)
    return {"box": box * cfg.box_gain, "obj": obj * cfg.obj_gain, "cls": cls * cfg.cls_gain}


def view_loss(
    logits: Tensor, views: Tensor, smoothing: float = 0.0, class_weights: Tensor | None = None
) -> Tensor:
    """Cross-entropy of view logits (B, V) against view indices (B,) long; a scalar mean (weighted
    mean with ``class_weights`` (V,)), with optional label smoothing."""
    weight = class_weights.to(logits.device, torch.float32) if class_weights is not None else None
    return F.cross_entropy(logits.float(), views.to(logits.device), weight=weight, label_smoothing=smoothing)


def task_losses(
    det_outputs: Sequence[Tensor] | None,
    cls_logits: Tensor | None,
    targets: Tensor,
    views: Tensor,
    model: nn.Module,
    cfg: LossConfig,
    view_class_weights: Tensor | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """The named loss parts and the (T,) task losses for the tasks the model has.

    Returns (parts, losses): parts has "box", "obj", "cls" when the model detects and "view" when it
    classifies; losses stacks the task losses in the order [det, view] (present tasks only), with
    det = box + obj + cls. ``view_class_weights`` (V,) is used when ``cfg.view_class_weights`` is on
    (and then required); the weighted mean does not depend on the weights' overall scale.
    """
    parts, terms = task_loss_terms(det_outputs, cls_logits, targets, views, model, cfg, view_class_weights)
    return parts, torch.stack(terms)


def task_loss_terms(
    det_outputs: Sequence[Tensor] | None,
    cls_logits: Tensor | None,
    targets: Tensor,
    views: Tensor,
    model: nn.Module,
    cfg: LossConfig,
    view_class_weights: Tensor | None = None,
) -> tuple[dict[str, Tensor], list[Tensor]]:
    """As :func:`task_losses`, with the task losses as separate scalars rather than stacked.

    A backward pass from one of these runs only that task's head; from an element of the stacked
    tensor it would also run every other head with a zero gradient (the stack's backward is dense).
    """
    parts: dict[str, Tensor] = {}
    tasks: list[Tensor] = []
    if det_outputs is not None:
        detect = model.detect
        det = detection_loss(det_outputs, targets, detect.anchors, detect.strides, cfg)
        parts.update(det)
        tasks.append(det["box"] + det["obj"] + det["cls"])
    if cls_logits is not None:
        if cfg.view_class_weights and view_class_weights is None:
            raise ValueError("loss.view_class_weights is on but no view_class_weights were given")
        weights = view_class_weights if cfg.view_class_weights else None
        parts["view"] = view_loss(cls_logits, views, cfg.view_smoothing, weights)
        tasks.append(parts["view"])
    if not tasks:
        raise ValueError("task_losses: the model produced neither detections nor view logits")
    return parts, tasks


def yolov5_scaled_gains(cfg: LossConfig, num_classes: int, imgsz: int, num_levels: int = 3) -> LossConfig:
    """The gains rescaled the way YOLOv5's training script does before training (``loss.gain_scaling``).

    The default gains were tuned for 80 classes at 640 px with 3 levels. The class BCE is a mean over
    nc columns, so fewer classes make each column count more: scale by nc / 80. The objectness BCE
    is a mean over all cells, and a smaller image has fewer cells per object, so each positive counts
    more: scale by (imgsz / 640)^2. All three scale by 3 / num_levels.
    """
    levels = 3 / num_levels
    return dataclasses.replace(
        cfg,
        box_gain=cfg.box_gain * levels,
        cls_gain=cfg.cls_gain * num_classes / 80 * levels,
        obj_gain=cfg.obj_gain * (imgsz / 640) ** 2 * levels,
    )
