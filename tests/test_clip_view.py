"""One view per clip: the clip of a frame from its file name, and the clip-level view accuracy by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.data.clips import clip_ids, frame_name, safe_part
from trainables.metrics.classification import clip_view_metrics


def test_clip_ids_from_the_shared_datasets_names_and_ours():
    files = ["/data/train/images/ZmNkwqloa8KTwp8=-unnamed_1_1.mp4-15.jpg",
             "ZmNkwqloa8KTwp8=-unnamed_1_1.mp4-16.jpg",
             "ZmNkwqloa8KTwp8=-unnamed_1_2.mp4-3.jpg",
             "synthetic/train0001-000012.png",  # patient and frame, no clip
             "no_dashes.png",
             frame_name("p-7", "clip 2/a", 31),
             "ZmNkwqloa8KTwp8=-unnamed_1_2.mp4-16(1).jpg",  # a frame saved twice: the shared data has 11
             "p-clip-3 (2).png"]
    assert frame_name("p-7", "clip 2/a", 31) == "p_7-clip_2_a-0031.jpg"
    assert list(clip_ids(files)) == ["ZmNkwqloa8KTwp8=-unnamed_1_1.mp4", "ZmNkwqloa8KTwp8=-unnamed_1_1.mp4",
                                     "ZmNkwqloa8KTwp8=-unnamed_1_2.mp4", None, None, "p_7-clip_2_a",
                                     "ZmNkwqloa8KTwp8=-unnamed_1_2.mp4", "p-clip"]
    assert safe_part("") == "_"


def test_clip_view_accuracy_by_hand():
    clips = ["a", "a", "a", "b", "b", None, "c"]
    truth = [0, 0, 1, 2, 2, 1, 1]
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4],  # a: mean (.367, .433, .2) -> 1
                      [0.1, 0.1, 0.8], [0.5, 0.4, 0.1],  # b: mean (.3, .25, .45) -> 2
                      [0.0, 1.0, 0.0],  # no clip: left out
                      [0.2, 0.5, 0.3]])  # c: -> 1
    # majority labels: a 0 (two of three), b 2, c 1 -> a wrong (though one frame's argmax is 0), b and c right
    got = clip_view_metrics(clips, truth, probs)
    # a is mixed (labels 0, 0, 1), c is one frame; 5 of the 6 frames with a clip carry their clip's majority label
    assert got == {"view_clip_accuracy": pytest.approx(2 / 3), "n_clips": 3.0, "n_mixed_clips": 1.0,
                   "n_single_frame_clips": 1.0, "clip_label_agreement": pytest.approx(5 / 6)}
    # a tie between two labels goes to the lower index: frames labelled 0 and 2, predicted 0 -> right
    tie = clip_view_metrics(["x", "x"], [2, 0], [[0.9, 0.05, 0.05], [0.6, 0.1, 0.3]])
    assert tie["view_clip_accuracy"] == 1.0 and tie["clip_label_agreement"] == 0.5 and tie["n_mixed_clips"] == 1


def test_clips_whose_labels_alternate_or_change_once_set_the_ceiling_by_hand():
    """Two clips as the shared data has them: one alternating between two views frame by frame (label noise),
    one where the probe moved once: a perfect frame classifier gets every clip right, yet one view per clip is the
    right label for only 7 of its 10 frames."""
    clips = ["alt"] * 5 + ["moved"] * 4 + ["one"]
    truth = [0, 1, 0, 1, 0, 2, 2, 2, 1, 1]  # alt | moved | one
    probs = np.eye(3)[truth]  # the frames' own labels, with certainty
    got = clip_view_metrics(clips, truth, probs)
    # alt: majority 0 (3 of 5), mean (0.6, 0.4, 0) -> 0, right; moved: majority 2 (3 of 4) -> 2, right; one: right
    # agreement: alt 3 + moved 3 + one 1 = 7 of 10 frames, the frame accuracy a one-view-per-clip answer can reach
    assert got == {"view_clip_accuracy": 1.0, "n_clips": 3.0, "n_mixed_clips": 2.0, "n_single_frame_clips": 1.0,
                   "clip_label_agreement": pytest.approx(0.7)}


def test_no_clip_in_the_names_is_nan_and_zero_clips():
    got = clip_view_metrics([None, None], [0, 1], [[1.0, 0.0], [0.0, 1.0]])
    assert math.isnan(got["view_clip_accuracy"]) and got["n_clips"] == 0.0 and math.isnan(got["clip_label_agreement"])
    with pytest.raises(ValueError, match="one of each per frame"):
        clip_view_metrics(["a"], [0, 1], [[1.0, 0.0], [0.0, 1.0]])
