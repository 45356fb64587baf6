"""The shared real dataset (regurgitation): every file parses, counts match its README, the leak is seen.

Skipped cleanly when ../shared/datasets/regurgitation is absent. Nothing is written next to it:
the decoded cache goes to a tmp folder through MTL_STUDY_CACHE.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from trainables.config import DataConfig
from trainables.data.labels import VIEW_MISSING, parse_label
from trainables.data.loader import load_data, load_dataset
from trainables.data.splits import split_overlap

ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "regurgitation"
YAML = ROOT / "data.yaml"
NO_VIEW = "aGdjwqtqa8Kb-unnamed_1_6.mp4-40.txt"
# The README's table: split -> images, patients, AR, MR, PR, TR, A4C, PLAX, PSAX, no view line
README = {
    "train": (799, 39, 224, 263, 55, 257, 97, 428, 273, 1),
    "val": (146, 27, 51, 46, 12, 37, 22, 58, 66, 0),
    "test": (251, 28, 89, 77, 19, 66, 94, 43, 114, 0),
}
FOLDER = {"train": "train", "val": "valid", "test": "test"}

pytestmark = pytest.mark.skipif(not YAML.is_file(), reason=f"shared dataset not present at {ROOT}")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("MTL_STUDY_CACHE")
    os.environ["MTL_STUDY_CACHE"] = str(cache)
    try:
        data, report = load_dataset(YAML, imgsz=64)
        again, report2 = load_dataset(YAML, imgsz=64)
        yield data, report, again, report2, cache
    finally:
        if old is None:
            del os.environ["MTL_STUDY_CACHE"]
        else:
            os.environ["MTL_STUDY_CACHE"] = old


def test_every_label_file_parses_and_only_one_lacks_a_view():
    missing = []
    for split, folder in FOLDER.items():
        labels = sorted((ROOT / folder / "labels").glob("*.txt"))
        assert len(labels) == README[split][0]
        for path in labels:
            result = parse_label(path.read_text(), nc=4, nv=3, file=str(path))
            assert all(p.kind == VIEW_MISSING for p in result.problems), result.problems
            assert result.label is not None and len(result.label.boxes) == 1
            if result.problems:
                missing.append(path.name)
    assert missing == [NO_VIEW]


def test_counts_match_the_readme_table(loaded):
    data, report, *_ = loaded
    [skipped] = report.skipped
    assert skipped.kind == VIEW_MISSING and skipped.file.endswith(NO_VIEW)
    skipped_boxes = parse_label(Path(skipped.file).read_text(), 4, 3).label.boxes
    for split, row in README.items():
        images, patients, *boxes_views, no_view = row
        idx = data.splits[split]
        assert len(idx) + no_view == images
        assert len(np.unique(data.groups[idx])) == patients
        classes = Counter(data.boxes[np.isin(data.boxes[:, 0], idx), 1].astype(int).tolist())
        if no_view:  # the skipped file's jet is in the README's counts
            classes.update(skipped_boxes[:, 0].astype(int).tolist())
        views = np.bincount(data.views[idx], minlength=3)
        assert [classes[c] for c in range(4)] + views.tolist() == list(boxes_views)


def test_the_split_leak_is_detected(loaded):
    data, *_ = loaded
    overlap = split_overlap(data.groups, data.splits)
    # the same answer from the file names alone
    patients = {s: {p.name.split("-")[0] for p in (ROOT / f / "images").iterdir()} for s, f in FOLDER.items()}
    assert overlap.leaks
    assert overlap.pairs == {"train&val": len(patients["train"] & patients["val"]),
                             "train&test": len(patients["train"] & patients["test"]),
                             "val&test": len(patients["val"] & patients["test"])}
    assert overlap.pairs["train&test"] > 20  # "most patients have frames in all three splits"


def test_second_load_is_a_cache_hit_with_equal_arrays_and_nothing_written_next_to_the_data(loaded):
    data, report, again, report2, cache = loaded
    assert not report.cache_hit and report2.cache_hit
    assert report2.cache_path.parent == cache
    np.testing.assert_array_equal(data.images, again.images)
    np.testing.assert_array_equal(data.boxes, again.boxes)
    assert report2.skipped == report.skipped
    assert sorted(p.name for p in ROOT.iterdir()) == ["README.md", "data.yaml", "test", "train", "valid"]


def test_patient_split_has_no_shared_patients(loaded, monkeypatch):
    _, _, _, _, cache = loaded
    monkeypatch.setenv("MTL_STUDY_CACHE", str(cache))
    cfg = DataConfig(source=str(YAML), imgsz=64, split="patient")
    data = load_data(cfg, seed=3)
    overlap = split_overlap(data.groups, data.splits)
    assert not overlap.leaks and sum(len(v) for v in data.splits.values()) == 1195
    np.testing.assert_array_equal(load_data(cfg, seed=3).splits["val"], data.splits["val"])
