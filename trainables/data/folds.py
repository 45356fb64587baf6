"""Patient folds: whole patients to K outer folds, stratified by the labels their frames carry.

A fold is a set of patients; frames of one patient are never in two folds. Each patient carries a set
of labels (the views and the detection classes of its frames). The assignment is iterative
stratification (Sechidis, Tsoumakas & Vlahavas, ECML 2011) with patients as the unit: labels are
placed rarest first, and each still unplaced patient carrying the label goes to the fold that holds
the fewest patients with that label so far (ties: fewest patients, then fewest frames, then the
lowest fold). A label
carried by at least K patients so lands in every fold unless its carriers were all placed earlier
by rarer labels; ``missing_labels`` says where that happened. Written here because scikit-learn's
``StratifiedGroupKFold`` stratifies one label per sample, and a patient carries several.

The inner split of a fold (its development patients into train and validation) is the same
assignment over the development patients, balancing each label's frames rather than its patients (the
validation split scores frames: a view carried by many patients with few frames each must not end up with
one frame there): validation is inner fold 0 of ``round(1 / val_fraction)`` inner folds (at least 2), so about
1 / that number of the development patients validates: 0.2 -> 1/5, 0.25 -> 1/4, 0.3 -> 1/3, 0.4 -> 1/2.

(study/heldout/folds.py, the same name, runs one complete study per fold this module assigns.)
"""

from __future__ import annotations

import numpy as np

from trainables.wording import counted

VIEW, BOX = "view", "class"


def patient_labels(groups: np.ndarray, views: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, list[frozenset[str]],
                                                                                     np.ndarray]:
    """(P,) sorted patient ids, each patient's label set (``view:<i>``, ``class:<c>``) and (P,) frame counts.

    groups (N,) str patient of each image; views (N,) int64 view of each image; boxes (K, 6)
    ``[image_index, class, x1, y1, x2, y2]``.
    """
    patients, inverse, frames = np.unique(groups, return_inverse=True, return_counts=True)
    labels: list[set[str]] = [set() for _ in patients]
    for p, v in zip(inverse, views, strict=True):
        labels[p].add(f"{VIEW}:{int(v)}")
    for image, cls in zip(boxes[:, 0].astype(np.int64), boxes[:, 1].astype(np.int64), strict=True):
        labels[inverse[image]].add(f"{BOX}:{int(cls)}")
    return patients, [frozenset(s) for s in labels], frames


def label_frames(groups: np.ndarray, views: np.ndarray, boxes: np.ndarray) -> list[dict[str, int]]:
    """Per patient (in ``patient_labels``' order): label -> how many of its frames carry it (a view: frames of
    that view; a class: frames with at least one box of it). Arguments as ``patient_labels``."""
    patients, inverse = np.unique(groups, return_inverse=True)
    out: list[dict[str, int]] = [{} for _ in patients]
    for p, v in zip(inverse, views, strict=True):
        key = f"{VIEW}:{int(v)}"
        out[p][key] = out[p].get(key, 0) + 1
    for image, cls in sorted({(int(i), int(c)) for i, c in boxes[:, :2].astype(np.int64)}):
        key = f"{BOX}:{cls}"
        out[inverse[image]][key] = out[inverse[image]].get(key, 0) + 1
    return out


def stratified_folds(labels: list[frozenset[str]], frames: np.ndarray, k: int, seed: int,
                     weights: list[dict[str, int]] | None = None) -> np.ndarray:
    """(P,) int64 fold (0..k-1) of each patient; see the module docstring. Raises ValueError when k < 2
    or there are fewer patients than folds.

    ``weights`` (``label_frames``): balance each label's frames over the folds instead of its patients (a
    patient then goes to the fold holding the fewest frames of the label so far): what a validation split
    needs, where a view carried by many patients with few frames each would otherwise be scored on a handful."""
    n = len(labels)
    if k < 2:
        raise ValueError(f"{counted(k, 'fold')}: need at least 2")
    if n < k:
        raise ValueError(f"{counted(n, 'patient')} cannot fill {counted(k, 'fold')}; use fewer folds")
    order = np.random.default_rng(seed).permutation(n)  # the seeded order patients are taken in
    fold = np.full(n, -1, np.int64)
    holding: dict[str, np.ndarray] = {}  # label -> (k,) patients with it per fold
    frames_in = np.zeros(k, np.int64)
    patients_in = np.zeros(k, np.int64)

    def place(p: int, key: np.ndarray) -> None:
        # fewest by key, then fewest patients (the fold is the statistical unit), then frames, then lowest
        f = int(np.lexsort((np.arange(k), frames_in, patients_in, key))[0])
        fold[p] = f
        frames_in[f] += frames[p]
        patients_in[f] += 1
        for label in labels[p]:
            holding.setdefault(label, np.zeros(k, np.int64))[f] += 1 if weights is None else weights[p][label]

    carriers: dict[str, list[int]] = {}
    for p in order:
        for label in labels[p]:
            carriers.setdefault(label, []).append(int(p))
    for label in sorted(carriers, key=lambda lb: (len(carriers[lb]), lb)):  # rarest first
        for p in carriers[label]:
            if fold[p] < 0:
                place(p, holding.setdefault(label, np.zeros(k, np.int64)))
    for p in order:  # patients without a label
        if fold[p] < 0:
            place(int(p), np.zeros(k, np.int64))
    return fold


def missing_labels(labels: list[frozenset[str]], fold: np.ndarray, k: int) -> dict[str, list[int]]:
    """label -> the folds (sorted) that hold no patient with it; labels present in every fold are left out."""
    present: dict[str, set[int]] = {}
    for lab, f in zip(labels, fold, strict=True):
        for label in lab:
            present.setdefault(label, set()).add(int(f))
    return {label: sorted(set(range(k)) - folds) for label, folds in sorted(present.items()) if len(folds) < k}


def fold_split(groups: np.ndarray, views: np.ndarray, boxes: np.ndarray, folds: int, fold: int,
               val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """train / val / test image indices (each (n,) int64, sorted) of outer fold ``fold`` of ``folds``.

    test: the fold's patients; val: inner fold 0 of the other patients, ``round(1 / val_fraction)``
    inner folds (at least 2) drawn with a seed derived from ``seed`` and ``fold``; train: the rest.
    """
    patients, labels, frames = patient_labels(groups, views, boxes)
    outer = stratified_folds(labels, frames, folds, seed)
    dev = np.flatnonzero(outer != fold)
    inner_k = max(2, round(1 / val_fraction))
    weights = label_frames(groups, views, boxes)  # the validation split balances each view's frames
    inner = stratified_folds([labels[p] for p in dev], frames[dev], min(inner_k, len(dev)),
                             seed=seed * 1009 + fold + 1, weights=[weights[p] for p in dev])
    role = np.full(len(patients), "test", dtype=object)
    role[dev] = np.where(inner == 0, "val", "train")
    per_image = role[np.searchsorted(patients, groups)]
    return {name: np.flatnonzero(per_image == name).astype(np.int64) for name in ("train", "val", "test")}
