"""CVAT: the labels a project needs, and its exports read back (boxes, and the view as an image tag).

Out (``export-labels --format cvat FRAMES --out DIR``): ``DIR/cvat_labels.json``, the project's labels for CVAT's
raw label editor (Project > Raw): each detection class a ``rectangle`` label, each view a ``tag`` label. The
frames are uploaded to the task as they are (CVAT keeps their names).

In (``import-labels --format cvat EXPORT``), one of:
- **"CVAT for images 1.1"** (``annotations.xml``, or the export's zip or folder holding it): every
  ``<image name width height>`` with its ``<box label xtl ytl xbr ybr>`` (pixels, normalised here by the
  image's width and height) and its ``<tag label="PLAX"/>`` (the view). The one file holds both: the simplest.
- **"YOLO 1.1"** (the export's zip or folder: ``obj.names``, ``obj_train_data/*.txt`` with ``class cx cy w h``,
  ``train.txt``) for the boxes, with ``--tags annotations.xml`` (the same task exported as "CVAT for images 1.1")
  for the views: YOLO 1.1 has no place for an image tag. ``obj.names`` lists the task's labels, the view
  labels among them; a box's class index is read through it by name.
An image with neither a box nor a tag has not been labelled yet: it is skipped and counted.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from study.errors import UsageError
from study.labeling.joint import Box, Labelled, Problems
from trainables.wording import counted

TOOL = "CVAT"
XML_FILE = "annotations.xml"
SHAPES = ("polygon", "polyline", "points", "mask", "cuboid", "ellipse", "skeleton")


def write_labels(out: Path, names: tuple[str, ...], views: tuple[str, ...]) -> list[str]:
    """``cvat_labels.json`` in ``out``; returns the lines to print."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "cvat_labels.json"
    if target.exists():
        raise UsageError(f"--out {out}: already holds cvat_labels.json — give a new folder (nothing is overwritten)")
    labels = [{"name": n, "type": "rectangle", "attributes": []} for n in names]
    labels += [{"name": v, "type": "tag", "attributes": []} for v in views]
    target.write_text(json.dumps(labels, indent=1) + "\n")
    return [f"wrote the CVAT labels to {target}",
            "CVAT: create a project, paste cvat_labels.json under Raw (labels), create a task with the frames; draw "
            "boxes and give each frame its view as a tag; when done, export the task as 'CVAT for images 1.1' and run "
            "python -m study.data import-labels --format cvat"]


def read_export(path: Path, tags: Path | None, problems: Problems) -> tuple[list[Labelled], int]:
    """The labelled images of a CVAT export (see the module docstring) and the number skipped as unlabelled."""
    files = _files(path)
    if XML_FILE in files or path.suffix.lower() == ".xml":
        xml = files.get(XML_FILE) or files[path.name]
        return _from_xml(xml, _shown(path, XML_FILE), problems, with_boxes=True)
    if "obj.names" in files:
        if tags is None:
            raise UsageError(f"{path}: a 'YOLO 1.1' export holds boxes but not the image tags (the view) — export the "
                             "task again as 'CVAT for images 1.1' and give that file as --tags (or give it alone "
                             "instead of the YOLO export: it holds the boxes too)")
        tag_files = _files(tags)
        xml = tag_files.get(XML_FILE) or tag_files.get(tags.name)
        if xml is None:
            raise UsageError(f"--tags {tags}: holds no {XML_FILE} — give the task's 'CVAT for images 1.1' export")
        tagged, _ = _from_xml(xml, _shown(tags, XML_FILE), problems, with_boxes=False, keep_empty=True)
        return _from_yolo(files, path, tagged, problems)
    raise UsageError(f"{path}: neither a 'CVAT for images 1.1' export ({XML_FILE}) nor a 'YOLO 1.1' export (obj.names) "
                     "— export the task from CVAT in one of those formats")


def _shown(path: Path, inner: str) -> str:
    return path.name if path.suffix.lower() == ".xml" else f"{path.name}/{inner}"


def _files(path: Path) -> dict[str, bytes]:
    """The export's files by their path inside it: an .xml file, a zip, or a folder (its .xml/.txt/.names/.data)."""
    wanted = (".xml", ".txt", ".names", ".data")
    try:
        if path.is_dir():
            found = {}
            for dirpath, _, filenames in os.walk(path):
                for name in filenames:
                    if name.lower().endswith(wanted):
                        full = Path(dirpath) / name
                        found[full.relative_to(path).as_posix()] = full.read_bytes()
            return found
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return {n: archive.read(n) for n in archive.namelist() if n.lower().endswith(wanted)}
        return {path.name: path.read_bytes()}
    except OSError as err:
        raise UsageError(f"{path}: cannot read the export ({err.strerror or err}) — check the path") from None
    except zipfile.BadZipFile as err:
        raise UsageError(f"{path}: a broken zip ({err}) — download the export from CVAT again") from None


def _from_xml(data: bytes, file: str, problems: Problems, with_boxes: bool,
              keep_empty: bool = False) -> tuple[list[Labelled], int]:
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as err:
        raise UsageError(f"{file}: not valid XML ({err}) — give CVAT's export 'CVAT for images 1.1'") from None
    if root.tag != "annotations":
        raise UsageError(f"{file}: not a CVAT XML export (its root is <{root.tag}>, not <annotations>) — give CVAT's "
                         "export 'CVAT for images 1.1'")
    if root.find("track") is not None:
        raise UsageError(f"{file}: a 'CVAT for video' export (<track>) — export the task as 'CVAT for images 1.1'")
    items, skipped = [], 0
    for image in root.iter("image"):
        name = image.get("name", "")
        where = f"{file}: image {name or image.get('id', '?')}"
        item = Labelled(where, name)
        try:
            item.size = (int(image.get("width", "")), int(image.get("height", "")))
        except ValueError:
            problems.add(where, "the <image> has no width and height", "export the task again as 'CVAT for images 1.1'")
            continue
        children = list(image)
        if not children and not keep_empty:
            skipped += 1  # not labelled yet
            continue
        for child in children:
            label = child.get("label", "")
            if child.tag == "tag":
                item.views.append(label)
            elif child.tag == "box" and with_boxes:
                _box(child, item, problems)
            elif child.tag in SHAPES and with_boxes:
                problems.add(where, f"a <{child.tag}> ({label}): only boxes and tags are read",
                             "draw the regions as rectangles in CVAT and export again")
        items.append(item)
    return items, skipped


def _box(element: ElementTree.Element, item: Labelled, problems: Problems) -> None:
    label = element.get("label", "")
    try:
        x1, y1, x2, y2 = (float(element.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr"))
        rotation = float(element.get("rotation") or 0)
    except ValueError:
        problems.add(item.where, f"box {label} lacks xtl, ytl, xbr or ybr", "export the task again")
        return
    if abs(rotation) > 1e-6:
        problems.add(item.where, f"box {label} is rotated by {rotation:g} degrees; boxes are axis-aligned",
                     "set the box's rotation to 0 in CVAT and export again")
        return
    assert item.size is not None
    width, height = item.size
    item.boxes.append(Box(label, x1 / width, y1 / height, x2 / width, y2 / height))


def _from_yolo(files: dict[str, bytes], path: Path, tagged: list[Labelled],
               problems: Problems) -> tuple[list[Labelled], int]:
    """Boxes from ``obj_train_data/*.txt`` (through ``obj.names``), views from the XML's tags, matched by stem."""
    classes = [line.strip() for line in files["obj.names"].decode("utf-8-sig").splitlines() if line.strip()]
    by_stem = {Path(t.image).stem: t for t in tagged}
    listed = {Path(line.strip()).stem: Path(line.strip()).name
              for line in files.get("train.txt", b"").decode("utf-8-sig").splitlines() if line.strip()}
    texts = {Path(k).stem: (k, v) for k, v in files.items() if "obj_" in k and k.endswith(".txt") and "/" in k}
    items, skipped = [], 0
    for stem in sorted(set(texts) | set(by_stem)):
        tag = by_stem.get(stem)
        inner, raw = texts.get(stem, ("", b""))
        name = tag.image if tag is not None else listed.get(stem, f"{stem}.jpg")
        where = f"{path.name}/{inner}" if inner else (tag.where if tag is not None else f"{path.name}: {stem}")
        item = Labelled(where, name, views=list(tag.views) if tag is not None else [])
        for number, line in enumerate(raw.decode("utf-8-sig").splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                index = int(tokens[0])
                cx, cy, w, h = (float(t) for t in tokens[1:])
            except ValueError:
                problems.add(f"{where}:{number}", f"{line.strip()!r} is not 'class cx cy w h'",
                             "export the task again as 'YOLO 1.1'")
                continue
            if not 0 <= index < len(classes):
                labels = counted(len(classes), "label")
                problems.add(f"{where}:{number}", f"class {index} is not in obj.names ({labels})",
                             "export the task again as 'YOLO 1.1' (obj.names and the boxes together)")
                continue
            item.boxes.append(Box(classes[index], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        if not item.boxes and not item.views:
            skipped += 1  # not labelled yet
            continue
        items.append(item)
    return items, skipped
