"""A labelling round trip: hand-written exports of Label Studio ("JSON") and CVAT ("CVAT for images 1.1", "YOLO 1.1")
are read back into the joint YOLO layout, checked line by line (coordinates computed by hand) and by
``python -m study.data check``; every broken export is one ``error:`` line and writes nothing."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from study.cli import run_cli
from study.data import main as data_main
from study.labeling.joint import CONFIG_FILE, default_classes
from study.labeling.label_studio import label_config

W, H = 200, 100  # every frame's size in pixels
FRAMES = ("p1-c1-0001.jpg", "p1-c1-0002.jpg", "p2-c2-0001.jpg", "p3-c3-0001.jpg")


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "to_label"
    folder.mkdir()
    for i, name in enumerate(FRAMES):
        Image.new("RGB", (W, H), (40 * i, 80, 120)).save(folder / name, quality=90)
    return folder


def box(label: str, x: float, y: float, w: float, h: float) -> dict:
    """A Label Studio rectangle region: x, y, width, height in percent of the image."""
    return {"id": f"r-{label}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


def view(*names: str) -> dict:
    return {"id": "v", "type": "choices", "from_name": "view", "to_name": "image", "value": {"choices": list(names)}}


def task(number: int, image: str, *results: dict, cancelled: bool = False) -> dict:
    annotations = [{"id": 100 + number, "completed_by": 1, "was_cancelled": cancelled, "result": list(results)}]
    return {"id": number, "data": {"image": image}, "annotations": annotations if results or cancelled else [],
            "predictions": []}


def label_studio_export() -> list[dict]:
    return [
        task(1, "/data/local-files/?d=to_label/p1-c1-0001.jpg", box("MR", 10, 20, 30, 40), view("PLAX")),
        # uploaded through the browser: Label Studio prefixed the name with 8 hex digits
        task(2, "/data/upload/1/0a1b2c3d-p1-c1-0002.jpg", box("AR", 0, 0, 50, 50), box("TR", 50, 50, 50, 50),
             view("A4C")),
        task(3, "/data/local-files/?d=to_label/p2-c2-0001.jpg", view("PSAX")),  # a negative: the view alone
        # 100.05 % wide: within the reader's tolerance, clipped to the image's edge
        task(4, "/data/local-files/?d=to_label/p3-c3-0001.jpg", box("PR", 80, 10, 20.05, 10), view("PLAX")),
        task(5, "/data/local-files/?d=to_label/p9-c9-0001.jpg"),  # not labelled yet: skipped, its frame not needed
        task(6, "/data/local-files/?d=to_label/p9-c9-0002.jpg", box("AR", 1, 1, 2, 2), cancelled=True),
    ]


EXPECTED = {
    "p1-c1-0001.txt": "1 0.250000 0.400000 0.300000 0.400000\n\n0 1 0\n",
    "p1-c1-0002.txt": "0 0.250000 0.250000 0.500000 0.500000\n3 0.750000 0.750000 0.500000 0.500000\n\n1 0 0\n",
    "p2-c2-0001.txt": "0 0 1\n",
    "p3-c3-0001.txt": "2 0.900000 0.150000 0.200000 0.100000\n\n0 1 0\n",
}


def import_labels(*argv: str) -> int:
    return run_cli(data_main, ["import-labels", *argv])


def check_passes(dataset: Path, capsys) -> None:
    for split in ("patient", "folders"):
        assert data_main(["check", str(dataset / "data.yaml"), "--split-by", split, "--imgsz", "64"]) == 0
    out = capsys.readouterr().out
    assert "classes   AR, MR, PR, TR" in out and "views     A4C, PLAX, PSAX" in out


def test_label_studio_json_export_becomes_the_joint_layout(tmp_path, frames, capsys):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(label_studio_export()))
    out = tmp_path / "dataset"
    assert import_labels("--format", "label-studio", str(export), "--images", str(frames), "--out", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (f"wrote 4 labelled frames to {out} (boxes: AR 1, MR 1, PR 1, TR 1; "
                          "views: A4C 1, PLAX 2, PSAX 1)")
    assert printed[1] == "skipped 2 tasks not labelled yet (no annotation)"
    assert printed[2] == f"check it: python -m study.data check {out / 'data.yaml'} --split-by patient"
    assert {p.name: p.read_text() for p in (out / "labels").iterdir()} == EXPECTED
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(FRAMES)
    assert (out / "images" / FRAMES[0]).read_bytes() == (frames / FRAMES[0]).read_bytes()
    check_passes(out, capsys)


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>7</id><name>echo</name><size>4</size><mode>annotation</mode><labels>
    <label><name>AR</name><type>rectangle</type></label><label><name>MR</name><type>rectangle</type></label>
    <label><name>PR</name><type>rectangle</type></label><label><name>TR</name><type>rectangle</type></label>
    <label><name>A4C</name><type>tag</type></label><label><name>PLAX</name><type>tag</type></label>
    <label><name>PSAX</name><type>tag</type></label></labels></task></meta>
  <image id="0" name="p1-c1-0001.jpg" width="200" height="100">
    <box label="MR" source="manual" occluded="0" xtl="20.00" ytl="20.00" xbr="80.00" ybr="60.00" z_order="0"/>
    <tag label="PLAX" source="manual"/>
  </image>
  <image id="1" name="p1-c1-0002.jpg" width="200" height="100">
  </image>
  <image id="2" name="p2-c2-0001.jpg" width="200" height="100">
    <tag label="PSAX" source="manual"/>
  </image>
  <image id="3" name="p3-c3-0001.jpg" width="200" height="100">
    <tag label="A4C" source="manual"/>
    <box label="TR" source="manual" occluded="0" xtl="100.00" ytl="0.00" xbr="200.00" ybr="50.00" z_order="0"/>
  </image>
</annotations>
"""
CVAT_EXPECTED = {
    "p1-c1-0001.txt": "1 0.250000 0.400000 0.300000 0.400000\n\n0 1 0\n",
    "p2-c2-0001.txt": "0 0 1\n",
    "p3-c3-0001.txt": "3 0.750000 0.250000 0.500000 0.500000\n\n1 0 0\n",
}


def test_cvat_for_images_xml_becomes_the_joint_layout(tmp_path, frames, capsys):
    export = tmp_path / "annotations.xml"
    export.write_text(CVAT_XML)
    out = tmp_path / "dataset"
    assert import_labels("--format", "cvat", str(export), "--images", str(frames), "--out", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (f"wrote 3 labelled frames to {out} (boxes: AR 0, MR 1, PR 0, TR 1; "
                          "views: A4C 1, PLAX 1, PSAX 1)")
    assert printed[1] == "skipped 1 image not labelled yet (no annotation)"
    assert {p.name: p.read_text() for p in (out / "labels").iterdir()} == CVAT_EXPECTED
    check_passes(out, capsys)


def test_cvat_yolo_export_with_the_xml_for_its_tags(tmp_path, frames, capsys):
    """YOLO 1.1 in its zip: obj.names lists every label of the task (the views among them) in CVAT's order; a
    box's class index is read through it by name. The views come from the 'CVAT for images 1.1' export."""
    names = ["PLAX", "MR", "AR", "A4C", "TR", "PR", "PSAX"]
    export = tmp_path / "task_echo-yolo 1.1.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("obj.names", "\n".join(names) + "\n")
        archive.writestr("obj.data", "classes = 7\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n")
        archive.writestr("train.txt", "".join(f"data/obj_train_data/{f}\n" for f in FRAMES))
        archive.writestr("obj_train_data/p1-c1-0001.txt", "1 0.25 0.4 0.3 0.4\n")  # MR
        archive.writestr("obj_train_data/p1-c1-0002.txt", "")
        archive.writestr("obj_train_data/p2-c2-0001.txt", "")
        archive.writestr("obj_train_data/p3-c3-0001.txt", "4 0.75 0.25 0.5 0.5\n")  # TR
    tags = tmp_path / "annotations.xml"
    tags.write_text(CVAT_XML.replace('xtl="100.00"', 'xtl="0.00"'))  # the XML's boxes are not read here
    out = tmp_path / "dataset"
    assert import_labels("--format", "cvat", str(export), "--tags", str(tags), "--images", str(frames),
                         "--out", str(out)) == 0
    assert {p.name: p.read_text() for p in (out / "labels").iterdir()} == CVAT_EXPECTED
    check_passes(out, capsys)


def test_yolo_without_tags_says_where_the_view_is(tmp_path, frames, capsys):
    export = tmp_path / "yolo"
    (export / "obj_train_data").mkdir(parents=True)
    (export / "obj.names").write_text("AR\nMR\nPR\nTR\n")
    (export / "obj_train_data" / "p1-c1-0001.txt").write_text("1 0.25 0.4 0.3 0.4\n")
    assert import_labels("--format", "cvat", str(export), "--images", str(frames), "--out", str(tmp_path / "d")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds boxes but not the image tags (the view)" in err[0] and "--tags" in err[0]
    assert not (tmp_path / "d").exists()


def broken_label_studio(change: str) -> list[dict]:
    tasks = copy.deepcopy(label_studio_export())
    results = tasks[0]["annotations"][0]["result"]
    if change == "unknown label":
        results[0]["value"]["rectanglelabels"] = ["XR"]
    elif change == "missing view":
        results.pop()
    elif change == "box outside":
        results[0]["value"].update(x=90, width=20)
    elif change == "two views":
        results[-1]["value"]["choices"] = ["A4C", "PLAX"]
    elif change == "two annotators":
        tasks[0]["annotations"].append(copy.deepcopy(tasks[0]["annotations"][0]))
    elif change == "frame not there":
        tasks[0]["data"]["image"] = "/data/local-files/?d=to_label/p7-c7-0001.jpg"
    elif change == "other size":
        results[0]["original_width"] = 400
    return tasks


@pytest.mark.parametrize(("change", "message"), [
    ("unknown label", "export.json: task 1 (p1-c1-0001.jpg): unknown label 'XR' on a box (not a detection class; "
                      "classes AR, MR, PR, TR; views A4C, PLAX, PSAX) — rename it in Label Studio, or give "
                      "--names/--views the project's own classes"),
    ("missing view", "export.json: task 1 (p1-c1-0001.jpg): p1-c1-0001.jpg has no view (one of A4C, PLAX, PSAX) — "
                     "give the image its view in Label Studio and export again"),
    ("box outside", "export.json: task 1 (p1-c1-0001.jpg): box MR spans x 0.900..1.100, y 0.200..0.600 of the "
                    "image, outside [0, 1] (a box outside the image) — fix the box in Label Studio and export again"),
    ("two views", "export.json: task 1 (p1-c1-0001.jpg): p1-c1-0001.jpg has 2 views (A4C, PLAX) — keep exactly one "
                  "view per image in Label Studio and export again"),
    ("two annotators", "export.json: task 1 (p1-c1-0001.jpg): 2 annotations of one image (several annotators) — "),
    ("frame not there", "export.json: task 1 (p7-c7-0001.jpg): frame 'p7-c7-0001.jpg' is not in --images "),
    ("other size", "export.json: task 1 (p1-c1-0001.jpg): Label Studio saw p1-c1-0001.jpg as 400x100 px but the "
                   "frame in --images is 200x100 px — "),
])
def test_a_broken_label_studio_export_is_one_line_and_writes_nothing(tmp_path, frames, capsys, change, message):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(broken_label_studio(change)))
    out = tmp_path / "dataset"
    assert import_labels("--format", "label-studio", str(export), "--images", str(frames), "--out", str(out)) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not out.exists() and captured.out == ""


@pytest.mark.parametrize(("old", "new", "message"), [
    ('<tag label="PLAX" source="manual"/>', '<tag label="PLAX" source="manual"/><tag label="A4C"/>',
     "annotations.xml: image p1-c1-0001.jpg: p1-c1-0001.jpg has 2 views (A4C, PLAX) — "),
    ('<tag label="PLAX" source="manual"/>', "", "annotations.xml: image p1-c1-0001.jpg: p1-c1-0001.jpg has no view"),
    ('<tag label="PLAX" source="manual"/>', '<tag label="Apical"/>',
     "annotations.xml: image p1-c1-0001.jpg: unknown view 'Apical' (not a view; views A4C, PLAX, PSAX) — "),
    ('label="MR"', 'label="Jet"', "annotations.xml: image p1-c1-0001.jpg: unknown label 'Jet' on a box "),
    ('xbr="80.00"', 'xbr="230.00"', "annotations.xml: image p1-c1-0001.jpg: box MR spans x 0.100..1.150, "),
    ('name="p1-c1-0001.jpg" width="200"', 'name="p1-c1-0001.jpg" width="640"',
     "annotations.xml: image p1-c1-0001.jpg: CVAT saw p1-c1-0001.jpg as 640x100 px but the frame in --images is "),
    ("<tag label=\"PSAX\" source=\"manual\"/>", '<polygon label="MR" points="1,1;5,5;1,5"/><tag label="PSAX"/>',
     "annotations.xml: image p2-c2-0001.jpg: a <polygon> (MR): only boxes and tags are read — "),
])
def test_a_broken_cvat_export_is_one_line_and_writes_nothing(tmp_path, frames, capsys, old, new, message):
    assert old in CVAT_XML
    export = tmp_path / "annotations.xml"
    export.write_text(CVAT_XML.replace(old, new, 1))
    out = tmp_path / "dataset"
    assert import_labels("--format", "cvat", str(export), "--images", str(frames), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not out.exists()


def test_an_existing_dataset_is_never_overwritten(tmp_path, frames, capsys):
    export = tmp_path / "annotations.xml"
    export.write_text(CVAT_XML)
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "data.yaml").write_text("precious")
    assert import_labels("--format", "cvat", str(export), "--images", str(frames), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists and is not empty" in err[0]
    assert (out / "data.yaml").read_text() == "precious"


def test_the_shipped_configuration_is_the_generated_one():
    names, views = default_classes()
    assert names == ("AR", "MR", "PR", "TR") and views == ("A4C", "PLAX", "PSAX")
    assert label_config(names, views) == CONFIG_FILE.read_text()


def test_label_studio_round_trip_through_exported_tasks(tmp_path, frames, capsys):
    """export-labels writes tasks Label Studio imports (frames served as local files, their names kept in
    data.frame); the export of those tasks, once labelled, comes back whatever Label Studio did to the URL."""
    ls = tmp_path / "ls"
    assert run_cli(data_main, ["export-labels", "--format", "label-studio", str(frames), "--out", str(ls)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (f"wrote 4 tasks to {ls / 'tasks.json'} and the labelling configuration to "
                          f"{ls / 'label_config.xml'}")
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={frames.resolve().parent}" in printed[1]
    assert (ls / "label_config.xml").read_text() == CONFIG_FILE.read_text()
    tasks = json.loads((ls / "tasks.json").read_text())
    assert tasks[0] == {"data": {"image": "/data/local-files/?d=to_label/p1-c1-0001.jpg", "frame": "p1-c1-0001.jpg"}}
    labelled = []
    for number, t in enumerate(tasks, start=1):
        views = ("PLAX", "A4C", "PSAX", "PLAX")
        t = {"id": number, "data": {**t["data"], "image": f"/data/upload/1/deadbeef-{t['data']['frame']}"}}
        t["annotations"] = [{"id": number, "was_cancelled": False,
                             "result": [box("AR", 10, 10, 20, 20), view(views[number - 1])]}]
        labelled.append(t)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(labelled))
    out = tmp_path / "dataset"
    assert import_labels("--format", "label-studio", str(export), "--images", str(frames), "--out", str(out)) == 0
    assert (out / "labels" / "p2-c2-0001.txt").read_text() == "0 0.200000 0.200000 0.200000 0.200000\n\n0 0 1\n"
    check_passes(out, capsys)


def test_cvat_labels_for_a_project(tmp_path, frames, capsys):
    out = tmp_path / "cvat"
    assert run_cli(data_main, ["export-labels", "--format", "cvat", str(frames), "--out", str(out)]) == 0
    labels = json.loads((out / "cvat_labels.json").read_text())
    assert [(label["name"], label["type"]) for label in labels] == [
        ("AR", "rectangle"), ("MR", "rectangle"), ("PR", "rectangle"), ("TR", "rectangle"),
        ("A4C", "tag"), ("PLAX", "tag"), ("PSAX", "tag")]
