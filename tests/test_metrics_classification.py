"""classification_metrics / confusion_matrix against hand-computed confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.metrics.classification import classification_metrics, confusion_matrix


def test_three_classes_by_hand() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    m = classification_metrics(y_true, y_pred, 3, names=["a4c", "plax", "psax"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert (m["recall_a4c"], m["recall_plax"], m["recall_psax"]) == pytest.approx((2 / 3, 1 / 2, 1.0))
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1 = 2 TP / (support + predicted): 4/5, 2/4, 2/3.
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert m["majority_share"] == pytest.approx(3 / 6)  # class a4c: 3 of the 6 frames
    assert all(type(v) is float for v in m.values())


def test_absent_classes() -> None:
    # Class 2 appears nowhere (left out of every mean); class 3 is only predicted (F1 0 counts in
    # macro-F1, but it has no recall, so balanced accuracy averages classes 0 and 1 only).
    y_true, y_pred = [0, 0, 1], [0, 3, 1]
    assert confusion_matrix(y_true, y_pred, 4).tolist() == [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    m = classification_metrics(y_true, y_pred, 4)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert math.isnan(m["recall_2"]) and math.isnan(m["recall_3"])
    assert m["majority_share"] == pytest.approx(2 / 3)  # class 0: 2 of the 3 true labels


def test_logits_and_tensors() -> None:
    logits = torch.tensor([[2.0, 0.1], [0.3, 0.9], [1.5, -1.0]])
    a = classification_metrics(torch.tensor([0, 1, 1]), logits, 2)
    b = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)
    assert a == b
    assert a["recall_1"] == pytest.approx(0.5)


def test_empty_input_is_nan() -> None:
    m = classification_metrics([], [], 2)
    assert all(math.isnan(v) for v in m.values())
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]


def test_bad_input_is_one_clear_line() -> None:
    with pytest.raises(ValueError, match=r"y_pred holds 5, not a class index in 0\.\.2"):
        classification_metrics([0, 1], [0, 5], 3)
    with pytest.raises(ValueError, match="2 true labels but 3 predictions"):
        classification_metrics([0, 1], [0, 1, 1], 3)
