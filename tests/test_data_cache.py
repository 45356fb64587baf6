"""The decoded cache (location, hits, invalidation, recovery) and the letterbox box mapping."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainables.data import cache
from trainables.data.decode import PAD_VALUE, letterbox, letterbox_geometry
from trainables.data.loader import load_dataset

YAML = "train: train/images\nval: val/images\nnames: [jet]\ncls_names: [v0, v1]\n"


def make(root: Path, n: int = 3) -> Path:
    """A dataset whose images are 40x20 black with a white rectangle at x 10..30, y 4..12 (pixels)."""
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            image = np.zeros((20, 40, 3), np.uint8)
            image[4:12, 10:30] = 255
            Image.fromarray(image).save(root / split / "images" / f"p{i}-x.png")
            (root / split / "labels" / f"p{i}-x.txt").write_text("0 0.5 0.4 0.5 0.4\n1")  # x .25-.75, y .2-.6
    (root / "data.yaml").write_text(YAML)
    return root / "data.yaml"


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MTL_STUDY_CACHE")
    assert cache.cache_dir() == tmp_path / "x" / "mtl-study"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "mtl-study"


def test_second_load_hits_the_cache_in_mtl_study_cache_and_writes_nothing_by_the_data(monkeypatch, tmp_path):
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "cache"))
    yaml = make(tmp_path / "ds")
    before = sorted(p.relative_to(tmp_path / "ds") for p in (tmp_path / "ds").rglob("*"))
    first, r1 = load_dataset(yaml, imgsz=64)
    second, r2 = load_dataset(yaml, imgsz=64)
    assert (r1.cache_hit, r2.cache_hit) == (False, True)
    assert r2.cache_path.parent == tmp_path / "cache"
    assert sorted(p.name for p in r2.cache_path.iterdir()) == [
        "boxes.npy", "files.npy", "images.npy", "meta.json", "split_train.npy", "split_val.npy", "views.npy"]
    for a, b in [(first.images, second.images), (first.boxes, second.boxes), (first.views, second.views),
                 (first.files, second.files), (first.groups, second.groups)]:
        np.testing.assert_array_equal(a, b)
    assert first.splits.keys() == second.splits.keys() and first.fingerprint == second.fingerprint
    assert sorted(p.relative_to(tmp_path / "ds") for p in (tmp_path / "ds").rglob("*")) == before
    for f in r2.cache_path.glob("*.npy"):
        np.load(f, allow_pickle=False)  # plain arrays: loadable without pickle


def test_changed_label_settings_or_a_broken_entry_rebuild(monkeypatch, tmp_path):
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "cache"))
    yaml = make(tmp_path / "ds")
    data, _ = load_dataset(yaml, imgsz=64)
    assert load_dataset(yaml, imgsz=32)[1].cache_hit is False  # settings are part of the key
    label = tmp_path / "ds" / "train" / "labels" / "p0-x.txt"
    label.write_text("0 0.5 0.4 0.5 0.2\n1")
    changed, r3 = load_dataset(yaml, imgsz=64)
    assert not r3.cache_hit and changed.fingerprint != data.fingerprint
    (r3.cache_path / "images.npy").write_bytes(b"truncated")
    rebuilt, r4 = load_dataset(yaml, imgsz=64)
    assert not r4.cache_hit
    np.testing.assert_array_equal(rebuilt.images, changed.images)
    assert load_dataset(yaml, imgsz=64)[1].cache_hit  # the broken entry was replaced
    assert not list((tmp_path / "cache").glob(".*"))  # no temporary folders left behind


def test_a_copy_with_new_mtimes_is_the_same_data_and_changed_pixels_under_an_old_mtime_are_not(monkeypatch, tmp_path):
    """The fingerprint is content: a data set provisioned again (another folder, new modification times) hits
    the cache and passes ``--resume``'s data check; an image edited in place keeps no old fingerprint even when
    its modification time is set back."""
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "cache"))
    yaml = make(tmp_path / "ds")
    data, _ = load_dataset(yaml, imgsz=64)
    shutil.copytree(tmp_path / "ds", tmp_path / "copy")  # copytree keeps mtimes; set them all elsewhere
    for path in (tmp_path / "copy").rglob("*"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    copied, report = load_dataset(tmp_path / "copy" / "data.yaml", imgsz=64)
    assert report.cache_hit and copied.fingerprint == data.fingerprint
    image = tmp_path / "ds" / "val" / "images" / "p1-x.png"
    when = image.stat().st_mtime_ns
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] = 7
    Image.fromarray(pixels).save(image)
    os.utime(image, ns=(when, when))
    edited, report = load_dataset(yaml, imgsz=64)
    assert not report.cache_hit and edited.fingerprint != data.fingerprint


def test_letterbox_geometry_by_hand():
    assert letterbox_geometry(430, 320, 320) == (320, 238, 0, 41)  # 320 * 320/430 = 238.1
    assert letterbox_geometry(20, 40, 64) == (32, 64, 16, 0)
    assert letterbox_geometry(64, 64, 64) == (64, 64, 0, 0)


def test_letterbox_pads_with_grey_and_maps_boxes_onto_the_object(monkeypatch, tmp_path):
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "cache"))
    data, _ = load_dataset(make(tmp_path / "ds", n=1), imgsz=64)
    # 40x20 -> 64x32, top padding 16; the box x .25-.75, y .2-.6 -> x 16..48, y 16+6.4..16+19.2
    np.testing.assert_allclose(data.boxes[0], [0, 0, 16, 22.4, 48, 35.2], atol=1e-5)
    image = data.images[0]
    assert (image[:, :16] == PAD_VALUE).all() and (image[:, 48:] == PAD_VALUE).all()
    ys, xs = np.nonzero(image[0] > 128)  # the white rectangle, resized
    assert xs.min() == 16 and xs.max() + 1 == 48
    assert abs(ys.min() - 22.4) <= 1 and abs(ys.max() + 1 - 35.2) <= 1


@pytest.mark.parametrize("size", [(7, 3), (3, 7), (1, 1)])
def test_letterbox_of_odd_shapes(size):
    out, (w, h, left, top) = letterbox(Image.new("L", size, 255), 32)
    assert out.shape == (3, 32, 32) and max(w, h) == 32
    assert (out[:, top:top + h, left:left + w] == 255).all()
    assert (out == 255).sum() == 3 * w * h


def test_sixteen_bit_grey_is_scaled_not_clipped():
    out, _ = letterbox(Image.fromarray(np.full((4, 8), 30000, np.uint16)), 8)
    assert (out[:, 2:6] == round(30000 / 257)).all()


def test_progress_in_a_log_is_one_final_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "cache"))
    load_dataset(make(tmp_path / "ds"), imgsz=32, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("decode: 6/6 images in ") and err.count("\n") == 1 and "\r" not in err


def test_skipped_files_are_said_once_per_process_however_often_the_data_is_read(monkeypatch, tmp_path, capsys):
    """A folds study reads its data again for every re-run it scores: the one line about skipped files is said
    the first time only."""
    from trainables.config import TrialConfig
    from trainables.data.loader import load_data

    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path / "cache"))
    yaml = make(tmp_path / "ds")
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "ds" / "train" / "images" / "p9-x.png")
    cfg = TrialConfig.from_partial({"data.source": str(yaml), "data.imgsz": 64, "data.split": "folders"}).data
    for _ in range(3):
        load_data(cfg, seed=0)
    said = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert said == [f"data: 1 file skipped (run `python -m study.data check {yaml}` for the list)"]
