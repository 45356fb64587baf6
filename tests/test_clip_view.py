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
             frame_name("p-7", "clip 2/a", 31)]
    assert frame_name("p-7", "clip 2/a", 31) == "p_7-clip_2_a-0031.jpg"
    assert list(clip_ids(files)) == ["ZmNkwqloa8KTwp8=-unnamed_1_1.mp4", "ZmNkwqloa8KTwp8=-unnamed_1_1.mp4",
                                     "ZmNkwqloa8KTwp8=-unnamed_1_2.mp4", None, None, "p_7-clip_2_a"]
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
    assert got == {"clip_accuracy": pytest.approx(2 / 3), "n_clips": 3.0}
    # a tie between two labels goes to the lower index: frames labelled 0 and 2, predicted 0 -> right
    assert clip_view_metrics(["x", "x"], [2, 0], [[0.9, 0.05, 0.05], [0.6, 0.1, 0.3]])["clip_accuracy"] == 1.0


def test_no_clip_in_the_names_is_nan_and_zero_clips():
    got = clip_view_metrics([None, None], [0, 1], [[1.0, 0.0], [0.0, 1.0]])
    assert math.isnan(got["clip_accuracy"]) and got["n_clips"] == 0.0
    with pytest.raises(ValueError, match="one of each per frame"):
        clip_view_metrics(["a"], [0, 1], [[1.0, 0.0], [0.0, 1.0]])
