"""Image-classification metrics over plain label arrays (the echo view head)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class (sklearn's layout).

    y_true: (N,) class indices. y_pred: (N,) class indices, or (N, C) scores / logits (argmax taken).
    Tensors or numpy arrays.
    """
    t, p = _labels(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(
    y_true: Any, y_pred: Any, num_classes: int, names: Sequence[str] | None = None
) -> dict[str, float]:
    """Flat dict of Python floats (the confusion matrix itself: ``confusion_matrix``).

    Args: as ``confusion_matrix``; ``names`` label the per-class keys (default ``str(index)``).

    Returns:
        - ``accuracy``: correct / N.
        - ``balanced_accuracy``: mean recall over the classes present in ``y_true`` (sklearn's
          definition; predicting a class absent from ``y_true`` still lowers the others' recall).
        - ``macro_f1``: mean per-class F1 over the classes present in ``y_true`` or ``y_pred``
          (sklearn's ``average="macro"`` with its default labels); a class with no correct
          prediction has F1 0 (sklearn's ``zero_division=0``).
        - ``majority_share``: the most frequent true class's share of N, the accuracy of always naming it
          (the chance level an accuracy must beat to mean anything).
        - ``recall_<name>``: per-class recall; NaN for a class absent from ``y_true``.
        Every value is NaN when N = 0.
    """
    names = [str(c) for c in range(num_classes)] if names is None else [str(n) for n in names]
    if len(names) != num_classes:
        raise ValueError(f"classification_metrics: {len(names)} names for num_classes={num_classes}; "
                         "pass one name per class")
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)  # (C, C)
    n = cm.sum()
    support, predicted, correct = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)  # each (C,)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, correct / support, math.nan)
        f1 = np.where(support + predicted > 0, 2 * correct / (support + predicted), math.nan)  # = 2PR/(P+R)
    out = {
        "accuracy": float(correct.sum() / n) if n else math.nan,
        "balanced_accuracy": float(np.nanmean(recall)) if (support > 0).any() else math.nan,
        "macro_f1": float(np.nanmean(f1)) if n else math.nan,
        "majority_share": float(support.max() / n) if n else math.nan,
    }
    for c, name in enumerate(names):
        out[f"recall_{name}"] = float(recall[c])
    return out


def _labels(y_true: Any, y_pred: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t, p = _np(y_true), _np(y_pred)
    if p.ndim == 2:
        if p.shape[1] != num_classes:
            raise ValueError(f"classification: y_pred scores have {p.shape[1]} columns for num_classes={num_classes}")
        p = p.argmax(axis=1)
    t, p = t.reshape(-1), p.reshape(-1)
    if len(t) != len(p):
        raise ValueError(f"classification: {len(t)} true labels but {len(p)} predictions; pass one per image")
    for what, x in (("y_true", t), ("y_pred", p)):
        bad = (x < 0) | (x >= num_classes) | (x != np.round(x))
        if bad.any():
            raise ValueError(f"classification: {what} holds {x[bad][0]:g}, not a class index in 0..{num_classes - 1}")
    return t.astype(np.int64), p.astype(np.int64)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def clip_view_metrics(clips: Any, y_true: Any, probs: Any) -> dict[str, float]:
    """One view per clip: each clip's prediction is the argmax of its frames' mean probabilities, scored
    against the clip's majority true label (a tie goes to the lowest class index).

    A clip is what the file names say (trainables/data/clips.py), not a checked unit: on real data a clip can
    carry frames labelled with two or three views (label noise, or a probe that moved), and then its majority
    label is wrong for some of its frames. So the figures that say what the clip accuracy can mean come with it.

    Args:
        clips: (N,) clip id of each frame (any hashable); None marks a frame whose clip is unknown,
            left out of the score.
        y_true: (N,) true class index of each frame.
        probs: (N, C) class probabilities of each frame (rows summing to 1, e.g. a softmax).

    Returns:
        ``view_clip_accuracy``: correct clips / clips (NaN without a clip); ``n_clips``: clips scored;
        ``n_mixed_clips``: clips whose frames carry more than one label; ``n_single_frame_clips``: clips of one
        frame; ``clip_label_agreement``: the share of the clips' frames whose label is their clip's majority
        label (the most a one-view-per-clip answer can score at frame level; NaN without a clip).
    """
    t, p = _np(y_true).reshape(-1).astype(np.int64), _np(probs).astype(np.float64)
    ids = np.asarray(clips, dtype=object).reshape(-1)
    if p.ndim != 2 or not len(ids) == len(t) == len(p):
        raise ValueError(f"clip_view_metrics: {len(ids)} clip ids, {len(t)} labels and probabilities of shape "
                         f"{p.shape}; pass one of each per frame, probabilities as (N, C)")
    known = np.array([c is not None for c in ids], dtype=bool)
    if not known.any():
        return {"view_clip_accuracy": math.nan, "n_clips": 0.0, "n_mixed_clips": 0.0, "n_single_frame_clips": 0.0,
                "clip_label_agreement": math.nan}
    _, clip = np.unique(ids[known].astype(str), return_inverse=True)  # (N',) clip number of each frame
    n, c = int(clip.max()) + 1, p.shape[1]
    mean = np.zeros((n, c))
    np.add.at(mean, clip, p[known])  # per-clip sums; the argmax of the sum is the argmax of the mean
    votes = np.zeros((n, c), dtype=np.int64)  # (n, C) frames of each label in each clip
    np.add.at(votes, (clip, t[known]), 1)
    majority = votes.argmax(1)  # argmax takes the first (lowest) index on a tie
    correct = mean.argmax(1) == majority
    return {"view_clip_accuracy": float(correct.mean()), "n_clips": float(n),
            "n_mixed_clips": float(((votes > 0).sum(1) > 1).sum()),
            "n_single_frame_clips": float((votes.sum(1) == 1).sum()),
            "clip_label_agreement": float(votes[np.arange(n), majority].sum() / known.sum())}
