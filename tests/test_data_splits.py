"""Group keys from file names, seeded group splits, and the overlap report, on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.data.splits import group_keys, group_split, split_overlap


def test_default_group_is_the_prefix_before_the_first_dash():
    groups, unmatched = group_keys(["/d/train/images/Z2liwqVnacKV-unnamed_1_1.mp4-12.jpg", "nodash.jpg"])
    assert groups.tolist() == ["Z2liwqVnacKV", "nodash"] and unmatched == ["nodash.jpg"]


def test_custom_regex_and_a_regex_without_a_group():
    groups, unmatched = group_keys(["pat_07_frame3.png"], r"pat_(\d+)_")
    assert groups.tolist() == ["07"] and unmatched == []
    with pytest.raises(ValueError, match="no capture group"):
        group_keys(["a"], r"pat_\d+")


def test_group_split_keeps_groups_whole_and_covers_everything():
    groups = np.array([f"g{i % 10}" for i in range(100)])  # 10 groups of 10 images
    parts = group_split(groups, 0.2, 0.2, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(100))
    assert not split_overlap(groups, parts).leaks
    assert {k: len(v) for k, v in parts.items()} == {"train": 60, "val": 20, "test": 20}
    np.testing.assert_array_equal(group_split(groups, 0.2, 0.2, seed=0)["val"], parts["val"])
    assert any(not np.array_equal(group_split(groups, 0.2, 0.2, seed=s)["val"], parts["val"]) for s in range(1, 5))


def test_group_split_gives_each_split_a_group_even_when_fractions_are_small():
    groups = np.array(["a", "a", "a", "b", "c"])
    parts = group_split(groups, 0.01, 0.01, seed=0)
    assert all(len(v) > 0 for v in parts.values())
    with pytest.raises(ValueError, match="2 groups cannot fill 3 splits"):
        group_split(np.array(["a", "b"]), 0.2, 0.2, seed=0)
    no_test = group_split(np.array(["a", "b"]), 0.5, 0.0, seed=0)
    assert len(no_test["test"]) == 0 and len(no_test["val"]) == 1


def test_overlap_report():
    groups = np.array(["a", "a", "b", "c", "c", "d"])
    splits = {"train": np.array([0, 2, 3]), "val": np.array([1, 4]), "test": np.array([5])}
    overlap = split_overlap(groups, splits)
    assert overlap.groups_per_split == {"train": 3, "val": 2, "test": 1}
    assert overlap.shared == ["a", "c"] and overlap.leaks
    assert overlap.pairs == {"train&val": 2, "train&test": 0, "val&test": 0}
