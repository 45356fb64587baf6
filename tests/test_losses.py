"""YOLOv5 target assignment and losses, checked against hand-worked values."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from trainables.config import LossConfig, TrialConfig
from trainables.losses import (
    OBJ_BALANCE,
    build_targets,
    detection_loss,
    task_losses,
    view_loss,
    yolov5_scaled_gains,
)
from trainables.models.build import build_model
from trainables.models.yolo import DEFAULT_ANCHORS, STRIDES

ANCHORS = torch.tensor(DEFAULT_ANCHORS, dtype=torch.float32)  # (3, 3, 2) pixels
GRIDS_64 = [(8, 8), (4, 4), (2, 2)]  # imgsz 64
UNIT = LossConfig(box_gain=1.0, obj_gain=1.0, cls_gain=1.0, gain_scaling="none")
# One box in image 0, class 2: centre (19, 27), size 16 x 24 pixels.
BOX = torch.tensor([[0, 2, 11, 15, 27, 39]], dtype=torch.float32)


def assignments(targets: torch.Tensor, **kwargs) -> set[tuple[int, int, int, int, int]]:
    levels = build_targets(targets, ANCHORS, STRIDES, GRIDS_64, **kwargs)
    return {
        (level, int(b), int(a), int(y), int(x))
        for level, t in enumerate(levels)
        for b, a, y, x in zip(t.batch, t.anchor, t.gy, t.gx, strict=True)
    }


def test_hand_worked_assignment() -> None:
    # Level 0 (stride 8): centre (2.375, 3.375) grid units, size (2, 3). Anchors in grid units
    # (1.25, 1.625), (2, 3.75), (4.125, 2.875): worst ratios 1.85, 1.25, 2.06 < 4, all match.
    # Cells: own (y=3, x=2); x frac 0.375 < 0.5 -> left (3, 1); y frac 0.375 < 0.5 -> up (2, 2).
    # Level 1 (stride 16): centre (1.1875, 1.6875), size (1, 1.5). Anchors (1.875, 3.8125),
    # (3.875, 2.8125), (3.6875, 7.4375): ratios 2.54, 3.875, 4.96 -> anchors 0 and 1.
    # Cells: own (1, 1); x frac 0.19 -> left (1, 0); y frac 0.69 > 0.5 -> down (2, 1).
    # Level 2 (stride 32): the smallest anchor is 7.25x wider than the box: nothing.
    expected = {(0, 0, a, y, x) for a in range(3) for y, x in ((3, 2), (3, 1), (2, 2))}
    expected |= {(1, 0, a, y, x) for a in range(2) for y, x in ((1, 1), (1, 0), (2, 1))}
    assert assignments(BOX) == expected


def test_assignment_offsets_sizes_and_classes() -> None:
    level0 = build_targets(BOX, ANCHORS, STRIDES, GRIDS_64)[0]
    by_cell = {(int(y), int(x)): box.tolist() for y, x, box in zip(level0.gy, level0.gx, level0.box, strict=True)}
    assert by_cell == {(3, 2): [0.375, 0.375, 2, 3], (3, 1): [1.375, 0.375, 2, 3], (2, 2): [0.375, 1.375, 2, 3]}
    assert level0.cls.tolist() == [2] * 9
    torch.testing.assert_close(level0.anchor_wh[level0.anchor == 2][0], torch.tensor([4.125, 2.875]))


def test_anchor_threshold_and_borders() -> None:
    # With anchor_t = 2, anchor 2 of level 0 (ratio 2.06) no longer matches.
    assert {a for (lvl, _, a, _, _) in assignments(BOX, anchor_t=2.0) if lvl == 0} == {0, 1}
    # Image 1, centre (3, 5), size 6 x 10 -> level 0 centre (0.375, 0.625): no left neighbour
    # (outside the grid), down neighbour (1, 0); anchors 0, 1 (anchor 2 is 5.5x wider).
    corner = torch.tensor([[1, 0, 0, 0, 6, 10]], dtype=torch.float32)
    assert assignments(corner) == {(0, 1, a, y, 0) for a in (0, 1) for y in (0, 1)}
    # Level 1 alone: centre (60, 61) -> (3.75, 3.81): right/down neighbours would leave the grid;
    # centre (20, 40) -> (1.25, 2.5): left neighbour; y exactly half-way: no vertical neighbour.
    boxes = torch.tensor([[0, 0, 52, 49, 68, 73], [0, 0, 12, 28, 28, 52]], dtype=torch.float32)
    level1 = build_targets(boxes, ANCHORS[1:2], (16,), [(4, 4)])[0]
    assert level1.batch.numel() == 6  # anchors 0 and 1 for each box, 1 + 2 cells
    assert set(zip(level1.gy.tolist(), level1.gx.tolist(), strict=True)) == {(3, 3), (2, 1), (2, 0)}


def test_no_targets_gives_empty_assignments() -> None:
    levels = build_targets(torch.zeros(0, 6), ANCHORS, STRIDES, GRIDS_64)
    assert [t.batch.numel() for t in levels] == [0, 0, 0]


def raw_outputs(nc: int, fill: float = -30.0) -> list[torch.Tensor]:
    """Batch of 2 at imgsz 64; every logit = fill (objectness ~0 everywhere)."""
    return [torch.full((2, 3, h, w, 5 + nc), fill) for h, w in GRIDS_64]


def set_predictions(outs: list[torch.Tensor], scale: float, obj_logit: float, cls_logit: float | None) -> None:
    """Make every assigned slot predict the target box with its size times ``scale``."""
    for out, t in zip(outs, build_targets(BOX, ANCHORS, STRIDES, GRIDS_64), strict=True):
        sig_xy = (t.box[:, :2] + 0.5) / 2  # invert xy = 2σ - 0.5
        sig_wh = torch.sqrt(t.box[:, 2:] * scale / t.anchor_wh) / 2  # invert wh = (2σ)^2 * anchor
        slot = out[t.batch, t.anchor, t.gy, t.gx]  # (n, 5 + nc) copy
        slot[:, :2] = torch.logit(sig_xy.double()).float()
        slot[:, 2:4] = torch.logit(sig_wh.double()).float()
        slot[:, 4] = obj_logit
        if cls_logit is None:
            slot[:, 5:] = -30.0
            slot[torch.arange(len(slot)), 5 + t.cls] = 30.0
        else:
            slot[:, 5:] = cls_logit
        out[t.batch, t.anchor, t.gy, t.gx] = slot


def test_perfect_predictions_give_zero_loss() -> None:
    outs = raw_outputs(nc=4)
    set_predictions(outs, scale=1.0, obj_logit=30.0, cls_logit=None)
    parts = detection_loss(outs, BOX, ANCHORS, STRIDES, UNIT)
    assert parts["box"].item() == pytest.approx(0.0, abs=1e-5)
    assert parts["obj"].item() == pytest.approx(0.0, abs=1e-4)
    assert parts["cls"].item() == pytest.approx(0.0, abs=1e-5)


def test_hand_computed_losses_for_a_box_twice_too_big() -> None:
    # Predicted boxes share the target's centre and aspect but have 2x its width and height:
    # IoU = 1/4 with no centre-distance or aspect penalty, so 1 - CIoU = 0.75 per assignment.
    outs = raw_outputs(nc=4)
    set_predictions(outs, scale=2.0, obj_logit=1.0, cls_logit=0.0)
    cfg = LossConfig(box_gain=0.05, obj_gain=2.0, cls_gain=0.5, gain_scaling="none")
    parts = detection_loss(outs, BOX, ANCHORS, STRIDES, cfg)
    # box: mean 0.75 on each of the two levels with assignments
    assert parts["box"].item() == pytest.approx(0.05 * 2 * 0.75, rel=1e-5)
    # obj: BCE(logit 1, target IoU 0.25) = softplus(1) - 0.25 at the 9 level-0 slots (of 2*3*8*8)
    # and the 6 level-1 slots (of 2*3*4*4); the other slots are ~0 (logit -30, target 0)
    per_slot = math.log1p(math.exp(1.0)) - 0.25
    obj = OBJ_BALANCE[0] * 9 * per_slot / 384 + OBJ_BALANCE[1] * 6 * per_slot / 96
    assert parts["obj"].item() == pytest.approx(2.0 * obj, rel=1e-5)
    # cls: logits 0 -> BCE log 2 per entry whatever the one-hot target; two levels
    assert parts["cls"].item() == pytest.approx(0.5 * 2 * math.log(2), rel=1e-5)


def test_empty_image_gives_finite_losses_with_gradients() -> None:
    outs = [o.zero_().requires_grad_() for o in raw_outputs(nc=4)]
    parts = detection_loss(outs, torch.zeros(0, 6), ANCHORS, STRIDES, UNIT)
    assert parts["box"].item() == 0 and parts["cls"].item() == 0
    # all logits 0, all targets 0: BCE = log 2 everywhere, weighted by the level balance
    assert parts["obj"].item() == pytest.approx(sum(OBJ_BALANCE) * math.log(2), rel=1e-6)
    total = sum(parts.values())
    total.backward()
    for out in outs:
        assert torch.isfinite(out.grad).all()
        assert (out.grad[..., 4] > 0).all()  # pushes every objectness down
        assert (out.grad[..., :4] == 0).all() and (out.grad[..., 5:] == 0).all()


def test_single_class_has_no_class_loss() -> None:
    outs = raw_outputs(nc=1, fill=0.0)
    one_class = BOX.clone()
    one_class[:, 1] = 0
    assert detection_loss(outs, one_class, ANCHORS, STRIDES, UNIT)["cls"].item() == 0


def test_shared_slot_keeps_the_best_iou() -> None:
    # The same box twice: both land on the same slots; a perfect prediction keeps IoU ~1 as target.
    outs = raw_outputs(nc=4)
    set_predictions(outs, scale=1.0, obj_logit=30.0, cls_logit=None)
    bigger = torch.tensor([[0, 2, 9, 12, 29, 42]], dtype=torch.float32)  # same centre, 1.25x size
    parts = detection_loss(outs, torch.cat([BOX, bigger]), ANCHORS, STRIDES, UNIT)
    assert parts["obj"].item() == pytest.approx(0.0, abs=1e-4)


def test_view_loss_hand_values() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    views = torch.tensor([0, 2])
    ce = [-math.log(math.exp(2) / (math.exp(2) + 2)), -math.log(1 / (math.e + 2))]
    assert view_loss(logits, views).item() == pytest.approx(sum(ce) / 2, rel=1e-6)
    weights = torch.tensor([1.0, 1.0, 3.0])
    assert view_loss(logits, views, class_weights=weights).item() == pytest.approx(
        (ce[0] + 3 * ce[1]) / 4, rel=1e-6
    )
    # smoothing 0.3 over 3 views: target 0.8 on the true view, 0.1 on each other
    logp = F.log_softmax(logits, dim=1)
    smooth = -(0.1 * logp.sum(dim=1) + 0.7 * logp[torch.arange(2), views]).mean()
    assert view_loss(logits, views, smoothing=0.3).item() == pytest.approx(smooth.item(), rel=1e-6)


def test_yolov5_scaled_gains() -> None:
    scaled = yolov5_scaled_gains(LossConfig(), num_classes=4, imgsz=128)
    assert (scaled.box_gain, scaled.cls_gain) == (0.05, pytest.approx(0.025))
    assert scaled.obj_gain == pytest.approx(0.04)


def test_detection_loss_applies_yolov5_gain_scaling_by_default() -> None:
    # the test grids are 8x8 at stride 8: a 64 px input, 4 classes, 3 levels -> cls x 4/80, obj x (64/640)^2
    outs = raw_outputs(nc=4)
    set_predictions(outs, scale=2.0, obj_logit=1.0, cls_logit=0.0)
    plain = detection_loss(outs, BOX, ANCHORS, STRIDES, UNIT)
    scaled = detection_loss(outs, BOX, ANCHORS, STRIDES, dataclasses.replace(UNIT, gain_scaling="yolov5"))
    assert scaled["box"].item() == pytest.approx(plain["box"].item(), rel=1e-6)
    assert scaled["cls"].item() == pytest.approx(plain["cls"].item() * 4 / 80, rel=1e-6)
    assert scaled["obj"].item() == pytest.approx(plain["obj"].item() * (64 / 640) ** 2, rel=1e-6)


@pytest.mark.parametrize("arch", ["shared", "det_only", "cls_only", "dual"])
def test_task_losses_per_arm(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(TrialConfig.from_partial({"arch": arch}), num_classes=4, num_views=3)
    det, logits = model(torch.rand(2, 3, 64, 64))
    views = torch.tensor([0, 2])
    parts, losses = task_losses(det, logits, BOX, views, model, LossConfig())
    names = {"shared": ["box", "obj", "cls", "view"], "det_only": ["box", "obj", "cls"],
             "cls_only": ["view"], "dual": ["box", "obj", "cls", "view"]}[arch]
    assert list(parts) == names
    assert losses.shape == ({"shared": 2, "dual": 2}.get(arch, 1),)
    if "box" in parts:
        torch.testing.assert_close(losses[0], parts["box"] + parts["obj"] + parts["cls"])
        assert parts["box"] > 0 and parts["obj"] > 0 and parts["cls"] > 0
    if "view" in parts:
        torch.testing.assert_close(losses[-1], parts["view"])
    losses.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_task_losses_class_weights_switch() -> None:
    model = build_model(TrialConfig.from_partial({"arch": "cls_only"}), num_classes=4, num_views=3)
    _, logits = model(torch.rand(2, 3, 64, 64))
    views = torch.tensor([0, 2])
    weights = torch.tensor([1.0, 1.0, 3.0])
    on = LossConfig(view_class_weights=True)
    parts, _ = task_losses(None, logits, BOX, views, model, on, view_class_weights=weights)
    assert parts["view"].item() == pytest.approx(view_loss(logits, views, class_weights=weights).item())
    parts, _ = task_losses(None, logits, BOX, views, model, LossConfig(), view_class_weights=weights)
    assert parts["view"].item() == pytest.approx(view_loss(logits, views).item())  # switch off: unweighted
    with pytest.raises(ValueError, match="view_class_weights"):
        task_losses(None, logits, BOX, views, model, on)


def test_saturated_predictions_stay_finite() -> None:
    # Sigmoids at ~1e-13 give boxes of ~0 width; CIoU's atan(w / h) must not turn into NaN.
    outs = [o.requires_grad_() for o in raw_outputs(nc=4, fill=-30.0)]
    parts = detection_loss(outs, BOX, ANCHORS, STRIDES, UNIT)
    assert all(torch.isfinite(v) for v in parts.values())
    assert parts["box"].item() > 1.0  # no overlap at all: 1 - CIoU > 1
    sum(parts.values()).backward()
    assert all(torch.isfinite(o.grad).all() for o in outs)
