"""Counts in the tool's messages agree with their nouns (trainables/wording.py): "1 trial", never "1 trials"."""

from __future__ import annotations

import numpy as np

from trainables.wording import counted, plural


def test_one_is_singular_and_every_other_count_plural():
    assert counted(1, "trial") == "1 trial"
    assert counted(2, "trial") == "2 trials"
    assert counted(0, "frame") == "0 frames"
    assert counted(1, "epoch") == "1 epoch"
    assert counted(12, "epoch") == "12 epochs"


def test_regular_plurals_of_the_nouns_the_tool_counts():
    assert [plural(n) for n in ("box", "class", "epoch", "study", "day", "re-run", "DICOM", "box class")] == \
        ["boxes", "classes", "epochs", "studies", "days", "re-runs", "DICOMs", "box classes"]


def test_an_irregular_plural_is_given_and_counts_from_parquet_read_as_integers():
    assert counted(2, "series", "series") == "2 series"
    assert counted(1, "series", "series") == "1 series"
    assert counted(1.0, "fold") == "1 fold"  # a count read back from Parquet as a float
    assert counted(np.int64(1), "seed") == "1 seed"
    assert counted(np.float64(3.0), "seed") == "3 seeds"
