"""Raw detector outputs -> final detections per image: decode, score, threshold, NMS, cap.

Every image is processed to the end: there is no time limit that would silently drop the last
images of a slow batch (YOLOv5's validation NMS has one), so evaluation is the same on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert

from trainables.models.yolo import Detect


@torch.no_grad()
def postprocess(
    det_outputs: Sequence[Tensor],
    detect: Detect,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Detections per image.

    det_outputs: L raw tensors (B, A, H_l, W_l, 5 + nc) from ``Detect.forward``.
    Returns B tuples (boxes (N, 4) xyxy in input pixels, scores (N,), labels (N,) long), sorted by
    descending score, N <= max_det.

    Score = objectness prob x class prob of the box's best class: one label per box (no
    multi-label), so a box never competes in NMS with a copy of itself under another class. Boxes
    with score <= conf_thres are dropped, then class-aware NMS (``batched_nms``: boxes of different
    classes never suppress each other) at IoU ``iou_thres``.
    """
    decoded = detect.decode(det_outputs)  # (B, N, 5 + nc)
    results = []
    for rows in decoded:
        obj = rows[:, 4:5]  # (N, 1)
        cls_prob = rows[:, 5:] if rows.shape[1] > 5 else torch.ones_like(obj)  # (N, nc)
        scores, labels = (obj * cls_prob).max(dim=1)  # (N,), (N,)
        keep = scores > conf_thres
        boxes = box_convert(rows[keep, :4], "cxcywh", "xyxy")  # (n, 4)
        scores, labels = scores[keep], labels[keep]
        kept = batched_nms(boxes, scores, labels, iou_thres)[:max_det]  # sorted by score
        results.append((boxes[kept], scores[kept], labels[kept]))
    return results
