"""detection_metrics: hand-computed COCO cases, then pycocotools as the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.metrics.coco_reference import pycocotools_metrics, random_case
from trainables.metrics.detection import detection_metrics

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]


def pred(boxes: list, scores: list, labels: list) -> tuple:
    return np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(labels, int)


def gt(boxes: list, labels: list) -> tuple:
    return np.array(boxes, float).reshape(-1, 4), np.array(labels, int)


def same(a: float, b: float, tol: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def test_perfect_predictions_score_one() -> None:
    gts = [gt([A, B], [0, 1]), gt([B], [1])]
    preds = [pred([A, B], [0.9, 0.8], [0, 1]), pred([B], [0.7], [1])]
    m = detection_metrics(preds, gts, 2, names=["ar", "mr"])
    for key in ("map50", "map", "map75", "precision", "recall", "f1", "ap50_ar", "ap50_mr"):
        assert m[key] == pytest.approx(1.0, abs=1e-12), key
    assert m["f1_conf"] == 0.7  # the lowest threshold keeping every (correct) detection


def test_iou_two_thirds_passes_four_of_ten_thresholds() -> None:
    # IoU = 100 / 150 = 0.667: at least 0.50, 0.55, 0.60, 0.65; below 0.70 ... 0.95.
    m = detection_metrics([pred([[0, 0, 10, 15]], [0.9], [0])], [gt([A], [0])], 1)
    assert m["map50"] == pytest.approx(1.0)
    assert m["map75"] == 0.0
    assert m["map"] == pytest.approx(0.4)


def test_duplicate_between_two_true_positives() -> None:
    # Ranked TP, FP (duplicate of A), TP: recall [.5, .5, 1], precision [1, .5, .667], envelope
    # [1, .667, .667]; recall points 0..0.50 (51 of 101) read 1, 0.51..1.00 (50) read 2/3.
    preds = [pred([A, A, B], [0.9, 0.8, 0.7], [0, 0, 0])]
    m = detection_metrics(preds, [gt([A, B], [0, 0])], 1)
    expected = (51 + 50 * 2 / 3) / 101  # 0.83498...
    assert round(expected, 3) == 0.835
    assert m["map50"] == pytest.approx(expected, abs=1e-12)
    assert m["map"] == pytest.approx(expected, abs=1e-12)  # IoU 1: the same at every threshold
    # Best mean F1 keeps all three: P = 2/3, R = 1, F1 = 0.8 (vs 0.667 at 0.9 and 0.5 at 0.8).
    assert (m["precision"], m["recall"], m["f1"], m["f1_conf"]) == pytest.approx((2 / 3, 1.0, 0.8, 0.7))
    assert pycocotools_metrics(preds, [gt([A, B], [0, 0])], 1)["map50"] == pytest.approx(expected, abs=1e-12)


def test_one_true_positive_of_two_ground_truths() -> None:
    m = detection_metrics([pred([A], [0.9], [0])], [gt([A, B], [0, 0])], 1)
    assert m["map50"] == pytest.approx(51 / 101, abs=1e-12)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))


def test_image_with_ground_truth_and_no_predictions_counts() -> None:
    m = detection_metrics([pred([A], [0.9], [0]), pred([], [], [])], [gt([A], [0]), gt([B], [0])], 1)
    assert m["map50"] == pytest.approx(51 / 101, abs=1e-12)


def test_greedy_matching_takes_the_best_iou_ground_truth() -> None:
    # Overlapping A = [0,0,10,10] and C = [5,0,15,10]. The top detection [3,0,13,10] has IoU 70/130
    # = 0.538 with A and 80/120 = 0.667 with C: it takes C, so the second detection (= A) finds A
    # free. Both are TPs at IoU 0.50..0.65. From 0.70 the first is a FP: precision [0, .5],
    # envelope .5 up to recall .5 -> 25.5 / 101; the second (IoU 1) stays a TP.
    c_box = [5.0, 0.0, 15.0, 10.0]
    preds, gts = [pred([[3, 0, 13, 10], A], [0.9, 0.8], [0, 0])], [gt([A, c_box], [0, 0])]
    m = detection_metrics(preds, gts, 1)
    assert m["map50"] == pytest.approx(1.0, abs=1e-12)
    assert m["map75"] == pytest.approx(25.5 / 101, abs=1e-12)
    assert m["map"] == pytest.approx((4 * 1.0 + 6 * 25.5 / 101) / 10, abs=1e-12)
    ref = pycocotools_metrics(preds, gts, 1)
    assert all(same(m[k], ref[k]) for k in ("map50", "map", "map75"))


def test_wrong_class_on_a_right_box() -> None:
    m = detection_metrics([pred([A], [0.9], [1])], [gt([A], [0])], 2)
    assert m["map50"] == 0.0 and m["map"] == 0.0 and m["ap50_0"] == 0.0
    assert math.isnan(m["ap50_1"])  # class 1 has no ground truth: left out
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert math.isnan(m["f1_conf"])


def test_no_predictions_scores_zero() -> None:
    m = detection_metrics([pred([], [], []), pred([], [], [])], [gt([A], [0]), gt([B], [1])], 3)
    for key in ("map50", "map", "map75", "precision", "recall", "f1", "ap50_0", "ap50_1"):
        assert m[key] == 0.0, key
    assert math.isnan(m["ap50_2"])


def test_class_without_ground_truth_is_left_out() -> None:
    preds = [pred([A, B, [40, 40, 50, 50]], [0.9, 0.8, 0.95], [0, 1, 1])]
    m = detection_metrics(preds, [gt([A], [0])], 2)
    assert m["map"] == pytest.approx(1.0) and m["ap50_0"] == pytest.approx(1.0)
    assert math.isnan(m["ap50_1"])
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 1.0, 1.0))


def test_no_ground_truth_at_all_gives_nan_and_empty_input_does_not_crash() -> None:
    m = detection_metrics([pred([A], [0.5], [0])], [gt([], [])], 2)
    assert all(math.isnan(v) for v in m.values())
    m = detection_metrics([], [], 2)
    assert all(math.isnan(v) for v in m.values())


def test_max_det_caps_each_image_and_class() -> None:
    far = [50.0, 50.0, 60.0, 60.0]
    preds = [pred([far, A, B], [0.9, 0.8, 0.7], [0, 0, 1])]
    gts = [gt([A, B], [0, 1])]
    capped = detection_metrics(preds, gts, 2, max_det=1)
    assert capped["ap50_0"] == 0.0  # only the top (false) class-0 detection is evaluated
    assert capped["ap50_1"] == pytest.approx(1.0)  # the cap is per class, so class 1 keeps its one
    assert detection_metrics(preds, gts, 2, max_det=2)["ap50_0"] == pytest.approx(0.5)  # precision [0, .5]


def test_order_of_images_and_detections_does_not_matter() -> None:
    preds, gts = random_case(12, 15, 3, seed=3)  # continuous scores: no ties
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(gts))
    shuffled_preds = []
    for i in perm:
        boxes, scores, labels = preds[i]
        p = rng.permutation(len(scores))
        shuffled_preds.append((boxes[p], scores[p], labels[p]))
    a = detection_metrics(preds, gts, 3)
    b = detection_metrics(shuffled_preds, [gts[i] for i in perm], 3)
    assert a.keys() == b.keys()
    assert all(same(a[k], b[k]) for k in a), {k: (a[k], b[k]) for k in a}


def test_tensors_and_numpy_give_the_same_numbers() -> None:
    preds, gts = random_case(6, 10, 2, seed=1)
    t_preds = [(torch.tensor(b, dtype=torch.float32), torch.tensor(s), torch.tensor(lab)) for b, s, lab in preds]
    t_gts = [(torch.tensor(b, dtype=torch.float32), torch.tensor(lab)) for b, lab in gts]
    f_preds = [(b.numpy().astype(float), s.numpy(), lab.numpy()) for b, s, lab in t_preds]
    f_gts = [(b.numpy().astype(float), lab.numpy()) for b, lab in t_gts]
    a, b = detection_metrics(t_preds, t_gts, 2), detection_metrics(f_preds, f_gts, 2)
    assert all(same(a[k], b[k]) for k in a)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("integer", [False, True])
def test_random_cases_equal_pycocotools(seed: int, integer: bool) -> None:
    # integer=True: rounded boxes and 2-decimal scores, so IoU ties, IoUs exactly on a threshold and
    # score ties across and within images all occur.
    preds, gts = random_case(25, 20, 3, seed=seed, integer=integer)
    max_det = 5 if seed % 2 else 100  # also exercise the cap
    ours = detection_metrics(preds, gts, 3, max_det=max_det)
    ref = pycocotools_metrics(preds, gts, 3, max_det=max_det, with_f1=True)
    assert sum(len(g[1]) == 0 for g in gts) and sum(len(p[1]) == 0 for p in preds)  # empty images present
    for key, value in ref.items():
        assert same(ours[key], value, 1e-6), (key, ours[key], value)


@pytest.mark.parametrize(
    ("preds", "gts", "message"),
    [
        ([pred([A], [0.5], [0])], [], "1 prediction entries but 0 ground-truth"),
        ([pred([A], [0.5], [3])], [gt([A], [0])], "preds[0] has a label outside the class indices 0..1"),
        ([pred([[10, 0, 0, 10]], [0.5], [0])], [gt([A], [0])], "x2 < x1"),
        ([pred([A], [0.5, 0.4], [0])], [gt([A], [0])], "1 boxes, 2 scores and 1 labels"),
        ([pred([A], [float("nan")], [0])], [gt([A], [0])], "NaN or infinite"),
    ],
)
def test_bad_input_is_one_clear_line(preds: list, gts: list, message: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        detection_metrics(preds, gts, 2)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_matching_in_many_small_chunks_gives_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainables.metrics.coco as coco

    preds, gts = random_case(30, 40, 2, seed=7, integer=True)
    whole = detection_metrics(preds, gts, 2)
    monkeypatch.setattr(coco, "_CHUNK_ELEMENTS", 50)  # one or a few (image, class) groups per chunk
    chunked = detection_metrics(preds, gts, 2)
    assert all(same(whole[k], chunked[k], 0.0) for k in whole)
