"""Post-processing on hand-made raw outputs: decoding, scores, thresholds, class-aware NMS, the cap."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.models.yolo import Detect
from trainables.postprocess import postprocess


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def hand_outputs() -> list[torch.Tensor]:
    """imgsz 64, batch 2, nc 2; every score ~2e-9 except the slots set here (image 0 only)."""
    outs = [torch.full((2, 3, 64 // s, 64 // s, 7), -10.0) for s in (8, 16, 32)]
    # A: level 0 (stride 8), anchor 0 (10 x 13), cell (y=2, x=3); zero xy/wh logits give the cell
    # centre (28, 20) and the anchor size -> xyxy (23, 13.5, 33, 26.5). Class 0, score σ(4)^2.
    outs[0][0, 0, 2, 3] = torch.tensor([0, 0, 0, 0, 4, 4, -4])
    # B: same cell, anchor 2 (33 x 23) shrunk to 11 x 13: IoU with A = 130 / 143. Class 0, lower score.
    wh = [logit(math.sqrt(11 / 33) / 2), logit(math.sqrt(13 / 23) / 2)]
    outs[0][0, 2, 2, 3] = torch.tensor([0, 0, *wh, 2, 3, -3])
    # C: same cell, anchor 1 (16 x 30) shrunk to A's 10 x 13, but class 1: NMS is per class.
    wh = [logit(math.sqrt(10 / 16) / 2), logit(math.sqrt(13 / 30) / 2)]
    outs[0][0, 1, 2, 3] = torch.tensor([0, 0, *wh, 1, -3, 3])
    # D: level 2 (stride 32), anchor 0 (116 x 90), cell (1, 1): centre (48, 48). Class 0.
    outs[2][0, 0, 1, 1] = torch.tensor([0, 0, 0, 0, 0, 1, 0])
    # E: score σ(-4)^2 = 3.2e-4 (class 0), under the default conf_thres 0.001.
    outs[1][0, 0, 0, 0] = torch.tensor([0, 0, 0, 0, -4, -4, -5])
    return outs


BOX_A = [23, 13.5, 33, 26.5]
BOX_B = [22.5, 13.5, 33.5, 26.5]
BOX_D = [-10, 3, 106, 93]
SCORES = {"A": sig(4) ** 2, "B": sig(2) * sig(3), "C": sig(1) * sig(3), "D": 0.5 * sig(1)}


def test_postprocess_decodes_scores_and_suppresses_the_duplicate() -> None:
    detect = Detect(2, (8, 8, 8))
    (boxes, scores, labels), (boxes1, scores1, labels1) = postprocess(hand_outputs(), detect)
    # B is suppressed by A (same class, IoU 0.91 > 0.6); C survives (other class); E is under threshold
    torch.testing.assert_close(boxes, torch.tensor([BOX_A, BOX_A, BOX_D]), atol=1e-4, rtol=0)
    torch.testing.assert_close(scores, torch.tensor([SCORES["A"], SCORES["C"], SCORES["D"]]))
    assert labels.tolist() == [0, 1, 0]
    assert boxes1.shape == (0, 4) and scores1.shape == (0,) and labels1.shape == (0,)


def test_postprocess_thresholds_and_cap() -> None:
    detect = Detect(2, (8, 8, 8))
    boxes, scores, _ = postprocess(hand_outputs(), detect, iou_thres=0.95)[0]  # B no longer suppressed
    torch.testing.assert_close(boxes[1], torch.tensor(BOX_B), atol=1e-4, rtol=0)
    assert scores.tolist() == pytest.approx([SCORES[k] for k in "ABCD"], rel=1e-5)
    _, scores, _ = postprocess(hand_outputs(), detect, conf_thres=0.5)[0]
    assert scores.tolist() == pytest.approx([SCORES["A"], SCORES["C"]], rel=1e-5)
    _, scores, labels = postprocess(hand_outputs(), detect, max_det=1)[0]
    assert scores.tolist() == pytest.approx([SCORES["A"]], rel=1e-5) and labels.tolist() == [0]
    # E passes a lower threshold: level 1 (stride 16), anchor 0 (30 x 61), cell (0, 0) -> centre (8, 8)
    boxes, scores, labels = postprocess(hand_outputs(), detect, conf_thres=1e-4)[0]
    torch.testing.assert_close(boxes[-1], torch.tensor([-7, -22.5, 23, 38.5]), atol=1e-4, rtol=0)
    assert scores[-1].item() == pytest.approx(sig(-4) ** 2, rel=1e-5) and labels.tolist() == [0, 1, 0, 0]
