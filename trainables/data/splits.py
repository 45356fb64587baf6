"""Patient (group) keys from file names, seeded group splits, and the overlap between given splits.

Frames of one patient are near-duplicates, so a split that puts one patient's frames on both sides
measures memory, not generalisation. The group of an image is the first capture group of a regex
applied to its file name (default: the text before the first '-').
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

DEFAULT_GROUP_REGEX = r"^([^-]+)-"
SPLIT_ORDER = ("train", "val", "test")


def group_keys(files: np.ndarray | list[str], regex: str = DEFAULT_GROUP_REGEX) -> tuple[np.ndarray, list[str]]:
    """(N,) str group of each file, and the files whose name the regex does not match.

    A file that does not match is its own group (its stem), so nothing is merged by accident;
    callers that split by group should refuse such files (see ``loader.load_data``).
    """
    pattern = re.compile(regex)
    if pattern.groups < 1:
        raise ValueError(f"group regex {regex!r} has no capture group; wrap the patient id in ( )")
    groups, unmatched = [], []
    for path in files:
        name = os.path.basename(str(path))
        match = pattern.search(name)
        if match is None or not match.group(1):
            unmatched.append(str(path))
            groups.append(os.path.splitext(name)[0])
        else:
            groups.append(match.group(1))
    return np.array(groups, dtype=str), unmatched


def group_split(
    groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Whole groups to train / val / test, sized by images: split name -> (n,) int64 sorted indices.

    The groups are shuffled with ``seed``; test takes groups until it holds at least
    ``test_fraction`` of the images, then val until ``val_fraction``; train keeps the rest. Each
    split with a positive fraction gets at least one group, and train always keeps one.
    Raises ValueError when there are too few groups for that.
    """
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    held_out = [(code, f) for code, f in ((2, test_fraction), (1, val_fraction)) if f > 0]  # 2 test, 1 val
    if len(unique) < len(held_out) + 1:
        raise ValueError(f"{len(unique)} groups cannot fill {len(held_out) + 1} splits; "
                         "add data or lower the fractions")
    order = np.random.default_rng(seed).permutation(len(unique))
    assignment = np.zeros(len(unique), np.int64)  # 0 train, 1 val, 2 test
    total, start = counts.sum(), 0
    for k, (code, fraction) in enumerate(held_out):
        later = len(held_out) - k  # groups still owed: one per later held-out split, one for train
        stop, taken = start + 1, counts[order[start]]
        while stop < len(unique) - later and taken < fraction * total:
            taken += counts[order[stop]]
            stop += 1
        assignment[order[start:stop]] = code
        start = stop
    per_image = assignment[inverse]
    return {name: np.flatnonzero(per_image == code).astype(np.int64)
            for code, name in enumerate(SPLIT_ORDER)}


@dataclass(frozen=True)
class Overlap:
    """Groups shared between splits.

    groups_per_split: split -> number of distinct groups; shared: groups found in more than one
    split (sorted); pairs: ``"train&val"`` -> number of groups in both.
    """

    groups_per_split: dict[str, int]
    shared: list[str]
    pairs: dict[str, int]

    @property
    def leaks(self) -> bool:
        return bool(self.shared)


def split_overlap(groups: np.ndarray, splits: dict[str, np.ndarray]) -> Overlap:
    """Which groups appear in more than one of ``splits`` (indices into ``groups``)."""
    sets = {name: set(groups[idx].tolist()) for name, idx in splits.items()}
    seen: dict[str, int] = {}
    for members in sets.values():
        for g in members:
            seen[g] = seen.get(g, 0) + 1
    pairs = {f"{a}&{b}": len(sets[a] & sets[b]) for a, b in combinations(sets, 2)}
    return Overlap({k: len(v) for k, v in sets.items()}, sorted(g for g, n in seen.items() if n > 1), pairs)


def leak_warning(groups: np.ndarray, splits: dict[str, np.ndarray]) -> str | None:
    """One warning line when patient groups cross the splits, else None."""
    overlap = split_overlap(groups, {k: v for k, v in splits.items() if len(v)})
    if not overlap.leaks:
        return None
    total = len(set(groups.tolist()))
    pairs = ", ".join(f"{k} {v}" for k, v in overlap.pairs.items() if v)
    return (f"warning: {len(overlap.shared)} of {total} patients have frames in more than one split ({pairs}): "
            "validation scores measure memory as much as generalisation; use --split patient")


def without_test(data: Any) -> Any:
    """``data`` (a DecodedData) with an empty test split: what trials and cost measurements are handed, so
    nothing about the test patients reaches the search, the epoch choice or early stopping."""
    return dataclasses.replace(data, splits={**data.splits, "test": np.zeros(0, np.int64)})


def patients_fingerprint(groups: np.ndarray, indices: np.ndarray) -> str:
    """16 hex digits naming the set of patients of ``indices`` (into ``groups``, (N,) str): what a checkpoint's
    config keeps of its test split (``data.test_patients``), so a rebuilt split can be checked against it.

    The patients are the file names' pseudonyms, already in folds.parquet; the hash only makes a short,
    order-free name for the set. "" for an empty split."""
    if len(indices) == 0:
        return ""
    members = "\n".join(sorted(set(np.asarray(groups)[indices].astype(str).tolist())))
    return hashlib.sha256(f"test-patients\n{members}".encode()).hexdigest()[:16]


def split_seed_of(cfg: Any, fallback: int) -> int:
    """The seed that deals a DataConfig's patients (and draws synthetic frames): ``cfg.split_seed``, or
    ``fallback`` where the config does not record one (-1: a config from before it was recorded)."""
    return cfg.split_seed if cfg.split_seed >= 0 else fallback
