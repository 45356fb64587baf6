"""The synthetic generator: deterministic for a seed, boxes exactly on the drawn jets, separable classes."""

from __future__ import annotations

import numpy as np

from trainables.config import DataConfig
from trainables.data.loader import load_data
from trainables.data.splits import split_overlap
from trainables.data.synthetic import JET_COLOURS, NAMES, VIEW_NAMES, synthetic_data


def jet_class_map(image: np.ndarray) -> np.ndarray:
    """(3, S, S) uint8 -> (S, S) jet class of each pixel by its chromaticity, -1 for grey / black pixels."""
    rgb = image.astype(np.float64)
    total = rgb.sum(0)
    chroma = rgb / np.maximum(total, 1)  # (3, S, S)
    target = JET_COLOURS / JET_COLOURS.sum(1, keepdims=True)  # (4, 3)
    distance = np.abs(chroma[None] - target[:, :, None, None]).sum(1)  # (4, S, S)
    best = distance.argmin(0)
    return np.where((distance.min(0) < 0.06) & (total > 150), best, -1)


def test_same_seed_same_frames_other_seed_other_frames():
    a = synthetic_data(20, 8, 8, 64, seed=5)
    b = synthetic_data(20, 8, 8, 64, seed=5)
    c = synthetic_data(20, 8, 8, 64, seed=6)
    for x, y in [(a.images, b.images), (a.boxes, b.boxes), (a.views, b.views)]:
        np.testing.assert_array_equal(x, y)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not np.array_equal(a.images, c.images)


def test_a_split_does_not_depend_on_the_size_of_the_others():
    small = synthetic_data(70, 4, 0, 64, seed=1)
    large = synthetic_data(70, 40, 9, 64, seed=1)
    np.testing.assert_array_equal(small.images[:70], large.images[:70])
    np.testing.assert_array_equal(small.images[70:74], large.images[70:74])


def test_layout_of_the_decoded_data():
    d = synthetic_data(30, 10, 5, 96, seed=0)
    assert d.images.shape == (45, 3, 96, 96) and d.images.dtype == np.uint8
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 30, "val": 10, "test": 5}
    assert d.names == NAMES and d.view_names == VIEW_NAMES
    assert d.boxes.dtype == np.float32 and np.all(np.diff(d.boxes[:, 0]) >= 0)
    assert set(np.unique(d.views)) <= {0, 1, 2}
    per_frame = np.bincount(d.boxes[:, 0].astype(int), minlength=45)
    assert per_frame.max() <= 2 and (per_frame == 0).any()  # some negatives
    assert not split_overlap(d.groups, d.splits).leaks


def test_boxes_lie_exactly_on_the_drawn_jets():
    d = synthetic_data(96, 0, 0, 128, seed=2)
    inside_fraction, tight = [], 0
    for i in range(len(d.images)):
        classes = jet_class_map(d.images[i])
        rows = d.boxes[d.boxes[:, 0] == i]
        coloured = classes >= 0
        covered = np.zeros_like(coloured)
        for _, cls, x1, y1, x2, y2 in rows:
            x1, y1, x2, y2 = map(int, (x1, y1, x2, y2))
            own = classes[y1:y2, x1:x2] == cls
            inside_fraction.append(own.mean())
            ys, xs = np.nonzero(own)
            tight += (x1 + xs.min(), y1 + ys.min(), x1 + xs.max() + 1, y1 + ys.max() + 1) == (x1, y1, x2, y2)
            covered[y1:y2, x1:x2] |= classes[y1:y2, x1:x2] == cls
        assert not (coloured & ~covered).any(), f"frame {i}: jet pixels outside every box of their class"
    # an ellipse fills pi/4 of its box; a second jet drawn on top can hide a little
    assert np.median(inside_fraction) > 0.7 and min(inside_fraction) > 0.3
    assert tight >= 0.95 * len(d.boxes)  # the box is the extent of its jet unless another jet covers an edge


def test_classes_and_views_are_all_present_and_jets_are_separable_by_colour():
    d = synthetic_data(200, 0, 0, 64, seed=0)
    assert set(np.unique(d.boxes[:, 1]).astype(int)) == {0, 1, 2, 3}
    assert set(np.unique(d.views)) == {0, 1, 2}
    target = JET_COLOURS / JET_COLOURS.sum(1, keepdims=True)
    gaps = [np.abs(target[a] - target[b]).sum() for a in range(4) for b in range(a + 1, 4)]
    assert min(gaps) > 0.3  # hues far apart: a small network separates them easily


def test_load_data_default_is_synthetic_with_config_sizes():
    cfg = DataConfig(synthetic_train=16, synthetic_val=8, synthetic_test=8, imgsz=64)
    d = load_data(cfg, seed=0)
    assert d.imgsz == 64 and {k: len(v) for k, v in d.splits.items()} == {"train": 16, "val": 8, "test": 8}
    patient = load_data(DataConfig(synthetic_train=48, synthetic_val=16, synthetic_test=16, imgsz=32,
                                   split="patient"), seed=0)
    assert not split_overlap(patient.groups, patient.splits).leaks
    assert sorted(np.concatenate(list(patient.splits.values())).tolist()) == list(range(80))
