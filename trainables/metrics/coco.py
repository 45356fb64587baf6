"""COCO bounding-box evaluation (pycocotools' ``COCOeval`` semantics) on flat numpy arrays.

Why our own engine and not faster-coco-eval: both agree with pycocotools, but faster-coco-eval
needs one Python dict per box (most of its time: docs/benchmarks.md#coco-engines) and does not expose which
detection matched at which IoU threshold, which the precision / recall / F1 operating point needs.
Here the greedy matching runs vectorised over all (image, class) groups at once, one step per
detection rank, so the Python loop is ``max detections per group`` long, not ``detections`` long.

Semantics replicated from pycocotools 2.0 (``evaluateImg`` + ``accumulate``), ``iouType="bbox"``:
- Detections of one (image, class) are sorted by score (stable: ties keep input order) and cut to
  the first ``max_det`` -- pycocotools' ``maxDets`` cap applies per image *and class*.
- At each IoU threshold t, each detection in that order takes, among the still unmatched ground
  truths of its image and class with IoU >= t, the one of highest IoU (on equal IoU the later
  ground truth, as pycocotools' ``>=`` update does). Thresholds are matched independently.
- IoU is pycocotools' ``bbIou`` arithmetic on xywh boxes (no +1 pixel), bit for bit.
- Per class, detections of all images are ranked by score (stable, image order then rank), the
  precision envelope is taken, and precision is read at 101 recall points (zero beyond the
  highest recall reached). Ground truths of images without detections count as misses.
- No crowd regions, no ignore flags, area range "all" (no area filtering).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# pycocotools' exact threshold arrays (linspace, not arange: arange drifts above 0.95 / 1.0).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)  # (10,)
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)  # (101,)

# Upper bound on padded (groups x detections x ground truths) elements per matching chunk: keeps
# memory bounded when a few images hold many boxes of one class.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class Matches:
    """The detections kept after the cap, and which of them are true positives.

    label: (D,) int64, score: (D,) float64 -- the kept detections, ranked the way pycocotools ranks
        them (class-major; within a class by descending score, stable).
    tp: (T, D) bool, true positive at each IoU threshold of ``IOU_THRESHOLDS``.
    gt_per_class: (K,) int64 number of ground-truth boxes of each class.
    """

    label: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    gt_per_class: np.ndarray


def coco_iou(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of xywh boxes exactly as pycocotools' ``bbIou`` computes it (float64, no +1).

    dt: (..., D, 4), gt: (..., G, 4) xywh; returns (..., D, G). Disjoint or touching boxes give 0.
    """
    dx, dy, dw, dh = (dt[..., :, None, i] for i in range(4))  # each (..., D, 1)
    gx, gy, gw, gh = (gt[..., None, :, i] for i in range(4))  # each (..., 1, G)
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)  # (..., D, G)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = w * h
    union = dw * dh + gw * gh - inter  # same operation order as the C code
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def match(
    dt_image: np.ndarray,
    dt_label: np.ndarray,
    dt_score: np.ndarray,
    dt_box: np.ndarray,
    gt_image: np.ndarray,
    gt_label: np.ndarray,
    gt_box: np.ndarray,
    num_classes: int,
    max_det: int,
) -> Matches:
    """Greedy COCO matching of all detections against all ground truths.

    dt_*: (D,) image index, class index, score and (D, 4) xywh box of every detection, in input
    order (image order, then the order within the image: it breaks score ties as in pycocotools).
    gt_*: (G,) image index, class index and (G, 4) xywh box of every ground truth, in input order.
    """
    k = num_classes
    # Sort detections by (image, class) group, then score descending; lexsort is stable.
    dt_group = dt_image * k + dt_label  # (D,)
    order = np.lexsort((-dt_score, dt_group))
    dt_group, dt_score, dt_box = dt_group[order], dt_score[order], dt_box[order]
    starts = np.flatnonzero(np.r_[True, dt_group[1:] != dt_group[:-1]]) if len(order) else np.zeros(0, int)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = rank < max_det
    dt_group, dt_score, dt_box = dt_group[keep], dt_score[keep], dt_box[keep]

    gt_group = gt_image * k + gt_label  # (G,)
    gorder = np.argsort(gt_group, kind="stable")
    gt_group, gt_box = gt_group[gorder], gt_box[gorder]

    tp = np.zeros((len(IOU_THRESHOLDS), len(dt_group)), dtype=bool)  # (T, D)
    _match_groups(dt_group, dt_box, gt_group, gt_box, tp)

    # pycocotools ranks a class's detections by concatenating images in order (each already sorted
    # by score), then a stable sort by score: a stable (class, -score) sort of our order is the same.
    dt_label = dt_group % k
    cls_order = np.lexsort((-dt_score, dt_label))
    return Matches(
        label=dt_label[cls_order],
        score=dt_score[cls_order],
        tp=tp[:, cls_order],
        gt_per_class=np.bincount(gt_label, minlength=k).astype(np.int64),
    )


def _match_groups(
    dt_group: np.ndarray, dt_box: np.ndarray, gt_group: np.ndarray, gt_box: np.ndarray, tp: np.ndarray
) -> None:
    """Fill ``tp`` (T, D) for detections sorted by (group, -score); ground truths sorted by group."""
    d_ids, d_start, d_count = np.unique(dt_group, return_index=True, return_counts=True)
    g_ids, g_start, g_count = np.unique(gt_group, return_index=True, return_counts=True)
    both, di, gi = np.intersect1d(d_ids, g_ids, assume_unique=True, return_indices=True)
    if len(both) == 0:
        return  # no image has a class both predicted and present: every detection is a false positive
    d_start, d_count, g_start, g_count = d_start[di], d_count[di], g_start[gi], g_count[gi]
    # Chunks of groups with similar sizes, so padding stays small and memory bounded.
    by_size = np.lexsort((d_count, g_count))
    ds, gs = d_count[by_size].tolist(), g_count[by_size].tolist()  # g ascending along by_size
    lo = 0
    while lo < len(by_size):
        hi, dmax = lo + 1, ds[lo]
        while hi < len(by_size) and (hi + 1 - lo) * max(dmax, ds[hi]) * gs[hi] <= _CHUNK_ELEMENTS:
            dmax = max(dmax, ds[hi])
            hi += 1
        idx = by_size[lo:hi]
        _match_chunk(d_start[idx], d_count[idx], g_start[idx], g_count[idx], dt_box, gt_box, tp)
        lo = hi


def _match_chunk(
    d_start: np.ndarray,
    d_count: np.ndarray,
    g_start: np.ndarray,
    g_count: np.ndarray,
    dt_box: np.ndarray,
    gt_box: np.ndarray,
    tp: np.ndarray,
) -> None:
    """Greedy matching of C groups at once, one detection rank per step, all thresholds together."""
    c, dm, gm = len(d_start), int(d_count.max()), int(g_count.max())
    d_valid = np.arange(dm) < d_count[:, None]  # (C, Dm)
    g_valid = np.arange(gm) < g_count[:, None]  # (C, Gm)
    d_idx = np.where(d_valid, d_start[:, None] + np.arange(dm), 0)  # (C, Dm) rows of dt_box
    g_idx = np.where(g_valid, g_start[:, None] + np.arange(gm), 0)  # (C, Gm)
    iou = coco_iou(dt_box[d_idx], gt_box[g_idx])  # (C, Dm, Gm)
    iou[~(d_valid[:, :, None] & g_valid[:, None, :])] = -1.0  # padding never matches
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None, None]  # (T, 1, 1), pycocotools' clamp
    matched = np.zeros((len(IOU_THRESHOLDS), c, gm), dtype=bool)  # (T, C, Gm)
    t_ix, c_ix = np.meshgrid(np.arange(len(IOU_THRESHOLDS)), np.arange(c), indexing="ij")  # (T, C)
    for r in range(dm):
        row = iou[:, r, :][None]  # (1, C, Gm)
        cand = (row >= thr) & ~matched  # (T, C, Gm)
        val = np.where(cand, row, -1.0)
        g = gm - 1 - np.argmax(val[..., ::-1], axis=-1)  # (T, C): last ground truth of highest IoU
        ok = cand[t_ix, c_ix, g]  # (T, C)
        matched[t_ix, c_ix, g] |= ok
        live = d_valid[:, r]  # (C,) groups that still have a detection at this rank
        tp[:, d_idx[live, r]] = ok[:, live]


def precision_at_recall(m: Matches) -> np.ndarray:
    """pycocotools' ``eval["precision"]`` for area "all" and the one cap: (T, 101, K).

    Entries are -1 for classes without ground truth (pycocotools' marker for "left out").
    """
    t, k = m.tp.shape[0], len(m.gt_per_class)
    out = np.full((t, len(RECALL_POINTS), k), -1.0)
    bounds = np.searchsorted(m.label, np.arange(k + 1))  # detections are class-major
    for c in range(k):
        npig = m.gt_per_class[c]
        if npig == 0:
            continue
        tps = m.tp[:, bounds[c] : bounds[c + 1]]  # (T, n) in rank order
        nd = tps.shape[1]
        tp_sum = np.cumsum(tps, axis=1).astype(float)
        fp_sum = np.cumsum(~tps, axis=1).astype(float)
        rc = tp_sum / npig
        pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
        for ti in range(t):
            inds = np.searchsorted(rc[ti], RECALL_POINTS, side="left")  # (101,)
            q = np.zeros(len(RECALL_POINTS))
            hit = inds < nd  # recall points beyond the highest recall reached stay 0
            q[hit] = pr[ti, inds[hit]]
            out[ti, :, c] = q
    return out
