"""The peer benchmark: the Ultralytics-format copy by hand, and the command end to end, offline (skipped
without the [peer] extra)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from study.benchmarks import peer
from trainables.data.types import DecodedData


def test_the_copy_holds_the_same_frames_and_boxes_as_cx_cy_w_h(tmp_path):
    images = np.zeros((3, 3, 64, 64), np.uint8)
    images[1, 0] = 200  # frame 1 red
    images[2, 2, 10:20] = 90
    data = DecodedData(
        images=images,
        boxes=np.array([[0, 1, 8, 16, 24, 48], [1, 0, 0, 0, 64, 32], [1, 2, 32, 32, 48, 64]], np.float32),
        views=np.array([2, 0, 1]), groups=np.array(["a", "a", "b"]),
        splits={"train": np.array([0, 1]), "val": np.array([2])},
        names=("AR", "MR", "PR"), view_names=("A4C", "PLAX", "PSAX"), fingerprint="f" * 40)
    det_yaml, cls = peer.export_copy(data, tmp_path / "copy")
    det = det_yaml.parent
    # boxes in letterboxed pixels -> normalised centre and size: (8, 16, 24, 48) at 64 px
    assert (det / "train/labels/000000.txt").read_text() == "1 0.250000 0.500000 0.250000 0.500000\n"
    assert (det / "train/labels/000001.txt").read_text() == ("0 0.500000 0.250000 1.000000 0.500000\n"
                                                              "2 0.625000 0.750000 0.250000 0.500000\n")
    assert (det / "val/labels/000000.txt").read_text() == ""  # a frame without a box: an empty label file
    from PIL import Image

    with Image.open(det / "train/images/000001.png") as im:  # lossless: the arms' own pixels
        assert np.array_equal(np.asarray(im).transpose(2, 0, 1), images[1])
    # the classifier's copy: one folder per view, the val frame under its own view
    assert sorted(p.relative_to(cls).as_posix() for p in cls.rglob("*.png")) == [
        "train/A4C/000001.png", "train/PSAX/000000.png", "val/PLAX/000000.png"]
    assert "names" in det_yaml.read_text() and (tmp_path / "copy" / "done").is_file()


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection is refused and recorded (the peer must never try)."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def run_peer(argv: list[str], capsys, monkeypatch) -> tuple[list[dict], str]:
    # importorskip would import ultralytics here, before the benchmark configures it offline (it looks up
    # DNS names on import): ask only whether it is installed
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("the [peer] extra (ultralytics) is not installed")
    monkeypatch.setenv("YOLO_CONFIG_DIR", os.environ.get("YOLO_CONFIG_DIR", ""))  # restored after the test
    monkeypatch.setenv("YOLO_OFFLINE", os.environ.get("YOLO_OFFLINE", ""))
    assert peer.main(argv) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith('{"bench": "peer"')]
    return rows, out


def check_table(rows: list[dict], out: str, arms: list[str]) -> None:
    assert [r["arm"] for r in rows] == [*arms, "YOLOv8n", "YOLOv8n-cls"]
    by = {r["arm"]: r for r in rows}
    assert 0.0 <= by["YOLOv8n"]["map50"] <= 1.0 and math.isnan(by["YOLOv8n"]["view_accuracy"])
    assert 0.0 <= by["YOLOv8n-cls"]["view_accuracy"] <= 1.0 and math.isnan(by["YOLOv8n-cls"]["map50"])
    assert all(r["epoch_s"] > 0 for r in rows)
    assert "cost ratio, peer pair (YOLOv8n + YOLOv8n-cls" in out


def test_peer_on_synthetic_frames_offline(tmp_path, capsys, monkeypatch, no_network):
    arms = ["shared/gradnorm"]
    rows, out = run_peer(["--epochs", "1", "--imgsz", "64", "--arms", *arms, "--set", "data.synthetic_train=32",
                          "--set", "data.synthetic_val=16", "--set", "train.interference_batches=1",
                          "--set", "train.bn_recalibration_batches=1"], capsys, monkeypatch)
    check_table(rows, out, arms)
    assert not no_network, f"the peer tried the network: {no_network[:3]}"
    cache = Path(os.environ["MTL_STUDY_CACHE"]) / "peer"
    assert list((cache / "data").glob("*/det/data.yaml")) and (cache / "runs" / "yolov8n" / "weights").is_dir()
    assert list((cache / "ultralytics").rglob("settings.json"))  # its settings in the tool's cache
    from PIL import Image

    assert Image.open.__module__ == "PIL.Image"  # its import patched Pillow for the whole process: undone


@pytest.mark.slow
def test_peer_on_the_shared_dataset(shared_dataset, capsys, monkeypatch, no_network):
    """The command of the issue: the shared echo data, 1 epoch at 64 px, both our default arms."""
    rows, out = run_peer(["--data", str(shared_dataset), "--epochs", "1", "--imgsz", "64"], capsys, monkeypatch)
    check_table(rows, out, list(peer.DEFAULT_ARMS))
    assert not no_network
