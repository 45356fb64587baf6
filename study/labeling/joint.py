"""What both labelling tools' imports share: a labelled frame, its checks, its label file, the dataset written.

A tool's reader (label_studio.py, cvat.py) turns its export into :class:`Labelled` frames (boxes already
normalised to [0, 1] by the tool's own convention) and records every problem it meets as one line; ``finish``
then checks the classes, the view, the boxes and the frames themselves, and writes the dataset only when there
is no problem at all: ``OUT/images/<frame>`` (a byte copy), ``OUT/labels/<stem>.txt`` and ``OUT/data.yaml``.

A label file holds the detection rows ``cls cx cy w h`` (6 decimals), an empty line, and the view as a one-hot
line (``0 1 0``), the layout of the shared dataset (trainables/data/labels.py reads it); a frame without boxes
holds the view line alone (a negative).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from study.errors import UsageError
from trainables.data.labels import COORD_TOLERANCE
from trainables.data.yolo_reader import IMAGE_SUFFIXES
from trainables.wording import counted

CONFIG_FILE = Path(__file__).with_name("label_studio.xml")  # the shipped Label Studio labelling configuration
MAX_LINES = 20  # problems shown; the rest are counted


@dataclass
class Box:
    """One box of an export, normalised to [0, 1] (x1 <= x2, y1 <= y2 unless the export was broken)."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class Labelled:
    """One labelled frame of an export. ``where`` names it in messages (``export.json: task 7``); ``size``:
    (width, height) in pixels as the tool saw the frame, when the export says (checked against the frame)."""

    where: str
    image: str  # the frame's name as the export gives it (resolved against --images by ``find_frame``)
    boxes: list[Box] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None


class Problems:
    """Every problem of an export, one line each (``where: what — fix``), raised together at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, what: str, fix: str) -> None:
        self.lines.append(f"{where}: {what} — {fix}")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        shown = self.lines[:MAX_LINES]
        if len(self.lines) > MAX_LINES:
            shown.append(f"... and {len(self.lines) - MAX_LINES} more problems of the same export")
        raise UsageError("\n".join(shown))


def default_classes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(detection classes, views) of the shipped labelling configuration: AR/MR/PR/TR and A4C/PLAX/PSAX."""
    root = ElementTree.fromstring(CONFIG_FILE.read_bytes())
    names = tuple(e.attrib["value"] for e in root.iter("Label"))
    views = tuple(e.attrib["value"] for e in root.iter("Choice"))
    return names, views


def parse_classes(names: str | None, views: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--names AR,MR --views A4C,PLAX`` (each defaulting to the shipped configuration's), checked."""
    default_names, default_views = default_classes()
    got_names = tuple(n.strip() for n in names.split(",")) if names else default_names
    got_views = tuple(v.strip() for v in views.split(",")) if views else default_views
    for flag, values, least in (("--names", got_names, 1), ("--views", got_views, 2)):
        if len(values) < least or not all(values) or len(set(values)) != len(values):
            raise UsageError(f"{flag} {','.join(values)}: give at least {least} different, non-empty names, "
                             "separated by commas")
    both = set(got_names) & set(got_views)
    if both:
        raise UsageError(f"--names and --views share {', '.join(sorted(both))}: a name is either a box's class or a "
                         "view, so the export can be read one way only")
    return got_names, got_views


def frame_index(images: Path) -> dict[str, list[Path]]:
    """The frames under ``images`` (recursive) by file name; a name found twice maps to both paths."""
    if not images.is_dir():
        raise UsageError(f"--images {images}: not a folder — give the folder of the frames you labelled (the --out "
                         "of python -m study.data frames)")
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(images):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.setdefault(name, []).append(Path(dirpath) / name)
    if not found:
        raise UsageError(f"--images {images}: holds no images ({', '.join(IMAGE_SUFFIXES)}) — give the folder of the "
                         "frames you labelled")
    return found


def box_line(box: Box, names: tuple[str, ...]) -> str:
    """``cls cx cy w h`` with 6 decimals (a box already checked and clipped)."""
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    return f"{names.index(box.label)} {cx:.6f} {cy:.6f} {box.x2 - box.x1:.6f} {box.y2 - box.y1:.6f}"


def label_text(boxes: list[Box], view: str, names: tuple[str, ...], views: tuple[str, ...]) -> str:
    """A label file: the detection rows, an empty line, the one-hot view line (the view line alone for none)."""
    one_hot = " ".join("1" if v == view else "0" for v in views)
    rows = [box_line(b, names) for b in boxes]
    return ("\n".join(rows) + "\n\n" if rows else "") + one_hot + "\n"


def check_box(box: Box, where: str, tool: str, problems: Problems) -> Box | None:
    """A box inside the image (within the reader's tolerance, then clipped) with a positive size, or None after
    recording why not."""
    lo, hi = min(box.x1, box.y1), max(box.x2, box.y2)
    if lo < -COORD_TOLERANCE or hi > 1 + COORD_TOLERANCE:
        problems.add(where, f"box {box.label} spans x {box.x1:.3f}..{box.x2:.3f}, y {box.y1:.3f}..{box.y2:.3f} of "
                     "the image, outside [0, 1] (a box outside the image)", f"fix the box in {tool} and export again")
        return None
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (box.x1, box.y1, box.x2, box.y2))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        problems.add(where, f"box {box.label} has no area (width {x2 - x1:g}, height {y2 - y1:g} of the image)",
                     f"delete the box or redraw it in {tool}, then export again")
        return None
    return Box(box.label, x1, y1, x2, y2)


def find_frame(item: Labelled, frames: dict[str, list[Path]], images: Path, problems: Problems) -> Path | None:
    """The frame of ``item`` under --images, by file name (Label Studio's upload prefix ``1a2b3c4d-`` taken off
    when the name is not there as given), or None after recording why not."""
    name = os.path.basename(item.image.replace("\\", "/"))
    candidates = frames.get(name)
    if candidates is None and len(name) > 9 and name[8] == "-" and all(c in "0123456789abcdef" for c in name[:8]):
        candidates = frames.get(name[9:])
    if candidates is None:
        problems.add(item.where, f"frame {name!r} is not in --images {images}",
                     "give --images the folder the labelled frames came from (python -m study.data frames --out)")
        return None
    if len(candidates) > 1:
        problems.add(item.where, f"frame {name!r} is in --images twice ({candidates[0]}, {candidates[1]})",
                     "give --images a folder where each frame name is found once")
        return None
    return candidates[0]


def finish(items: list[Labelled], images: Path, out: Path, names: tuple[str, ...], views: tuple[str, ...],
           tool: str, source: str, problems: Problems) -> list[str]:
    """Check every labelled frame and write the dataset (nothing at all when any problem was found).

    Returns the lines to print: what was written, and how to check it."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: already exists and is not empty — give a new folder for the dataset "
                         "(nothing is overwritten)")
    frames = frame_index(images)
    accepted: dict[str, tuple[Path, list[Box], str]] = {}  # frame name -> (its path, boxes, view)
    first_seen: dict[str, str] = {}
    stems: dict[str, str] = {}  # file name without its suffix -> the frame's name
    known = f"{', '.join(names)}; views {', '.join(views)}"
    for item in items:
        path = find_frame(item, frames, images, problems)
        if path is None:
            continue
        if path.name in first_seen:
            problems.add(item.where, f"frame {path.name} is labelled twice (also {first_seen[path.name]})",
                         f"keep one labelled copy of each frame in {tool} and export again")
            continue
        first_seen[path.name] = item.where
        if path.stem in stems:
            problems.add(item.where, f"frames {stems[path.stem]} and {path.name} would share one label file "
                         f"({path.stem}.txt)", "rename one of them (each frame needs its own stem) and label it again")
            continue
        stems[path.stem] = path.name
        if item.size is not None:
            actual = image_size(path)
            if actual is not None and actual != item.size:
                problems.add(item.where, f"{tool} saw {path.name} as {item.size[0]}x{item.size[1]} px but the frame "
                             f"in --images is {actual[0]}x{actual[1]} px",
                             "give --images the very frames that were labelled (not re-encoded or resized copies)")
                continue
        boxes = []
        for box in item.boxes:
            if box.label not in names:
                what = "a view, drawn as a box" if box.label in views else "not a detection class"
                problems.add(item.where, f"unknown label {box.label!r} on a box ({what}; classes {known})",
                             f"rename it in {tool}, or give --names/--views the project's own classes")
                continue
            checked = check_box(box, item.where, tool, problems)
            if checked is not None:
                boxes.append(checked)
        unknown = [v for v in item.views if v not in views]
        if unknown:
            what = "a box class, given as the view" if unknown[0] in names else "not a view"
            problems.add(item.where, f"unknown view {unknown[0]!r} ({what}; views {', '.join(views)})",
                         f"choose one of {', '.join(views)} in {tool}, or give --views the project's own views")
            continue
        if not item.views:
            problems.add(item.where, f"{path.name} has no view (one of {', '.join(views)})",
                         f"give the image its view in {tool} and export again")
            continue
        if len(set(item.views)) > 1:
            several = sorted(set(item.views))
            problems.add(item.where, f"{path.name} has {len(several)} views ({', '.join(several)})",
                         f"keep exactly one view per image in {tool} and export again")
            continue
        accepted[path.name] = (path, boxes, item.views[0])
    problems.raise_if_any()
    if not accepted:
        raise UsageError(f"{source}: no labelled frame in the export — label some frames in {tool} and export again")
    write_dataset(out, accepted, names, views, tool, source)
    box_counts = {n: sum(b.label == n for _, bs, _ in accepted.values() for b in bs) for n in names}
    view_counts = {v: sum(view == v for _, _, view in accepted.values()) for v in views}
    return [f"wrote {counted(len(accepted), 'labelled frame')} to {out} "
            f"(boxes: {', '.join(f'{k} {v}' for k, v in box_counts.items())}; "
            f"views: {', '.join(f'{k} {v}' for k, v in view_counts.items())})",
            f"check it: python -m study.data check {out / 'data.yaml'} --split-by patient"]


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image from its header, or None when it cannot be read (``check`` says so later)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError):
        return None


def write_dataset(out: Path, accepted: dict[str, tuple[Path, list[Box], str]], names: tuple[str, ...],
                  views: tuple[str, ...], tool: str, source: str) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for name, (path, boxes, view) in sorted(accepted.items()):
        shutil.copyfile(path, out / "images" / name)
        (out / "labels" / f"{Path(name).stem}.txt").write_text(label_text(boxes, view, names, views))
    (out / "data.yaml").write_text(
        f"# Labelled frames imported from {Path(source).name} ({tool}) by python -m study.data import-labels.\n"
        "# One folder of frames: split it by patient (check --split-by patient; study.run --split patient).\n"
        "path: .\ntrain: images\nval: images\n"
        f"nc: {len(names)}\nnames: {json.dumps(list(names))}\ncls_names: {json.dumps(list(views))}\n")
