"""Pair images with label files, parse and validate every label, and decide what is fatal.

Pairing follows the YOLO convention: the label of ``.../images/a/x.jpg`` is ``.../labels/a/x.txt``
(the last ``images`` folder of the path becomes ``labels``). Image folders are walked recursively.

Policy (nothing is ever trained on a label we had to guess):
    fatal (``DataError``): data.yaml problems, missing folders, an image path without an ``images``
        folder, two images sharing one label file, and every problem inside a label file (column
        count, non-numbers, class ids, coordinates, zero-area boxes, broken or repeated view lines,
        ambiguous lines), and a split left without images;
    skipped unless ``missing_view="error"``: a label file without a view line, and an image without
        a label file (it has no view either: we do not invent one);
    always skipped (listed): a label file without an image. (Corrupt images are skipped when decoded,
        see ``decode.py``.)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainables.data.datayaml import FOLDER, DataSpec, read_data_yaml
from trainables.data.errors import DataError
from trainables.data.labels import VIEW_MISSING, Problem, parse_label

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
NO_LABEL = "no_label"
NO_IMAGE = "no_image"
PAIRING = "pairing"
EMPTY = "empty"


@dataclass(frozen=True)
class Entry:
    """One usable image: its files and its labels.

    boxes: (M, 5) float32 ``[class, x1, y1, x2, y2]`` normalised to [0, 1].
    """

    image: str
    label: str
    boxes: np.ndarray
    view: int


@dataclass
class DatasetIndex:
    """Everything known about a dataset before its images are decoded.

    entries: unique usable images, sorted by path; splits: split name -> positions in ``entries``
    (an image listed by two splits appears once in ``entries`` and in both splits).
    skipped: problems of files left out (listed to the user, not fatal).
    source_hash: sha256 of data.yaml, every label file's bytes and every image's path, size and mtime.
    """

    spec: DataSpec
    entries: list[Entry]
    splits: dict[str, list[int]]
    skipped: list[Problem] = field(default_factory=list)
    source_hash: str = ""


def label_path_for(image: Path) -> Path | None:
    """``.../images/a/x.jpg`` -> ``.../labels/a/x.txt``; None if the path has no ``images`` folder."""
    parts = image.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(Path(dirpath, f) for f in filenames if f.lower().endswith(IMAGE_SUFFIXES))
    return sorted(found)


def read_yolo(yaml_path: str | Path, missing_view: str = "skip") -> DatasetIndex:
    """Read and validate a dataset; raise :class:`DataError` with every fatal problem at once."""
    if missing_view not in ("skip", "error"):
        raise ValueError(f"missing_view must be 'skip' or 'error', not {missing_view!r}")
    spec = read_data_yaml(yaml_path)
    nc, nv = len(spec.names), len(spec.view_names)
    fatal: list[Problem] = []
    skipped: list[Problem] = []
    digest = hashlib.sha256(spec.yaml_bytes)
    by_image: dict[Path, Entry | None] = {}  # None: looked at and left out
    label_owner: dict[Path, Path] = {}
    split_images: dict[str, list[Path]] = {}

    for split, folders in spec.folders.items():
        split_images[split] = []
        for folder in folders:
            images = list_images(folder)
            if not images:
                fatal.append(Problem(str(folder), 0, f"{split} folder holds no images ({', '.join(IMAGE_SUFFIXES)})",
                                     f"fix '{split}' in {spec.yaml_path.name} or add the images", FOLDER))
            unpaired = [im for im in images if label_path_for(im) is None]
            if unpaired:
                fatal.append(Problem(str(folder), 0, f"{len(unpaired)} images are not inside an 'images' folder, "
                                     "so their label files cannot be found",
                                     "put images under .../images/ and their labels under .../labels/", FOLDER))
                continue
            split_images[split].extend(images)

    for image in sorted({im for ims in split_images.values() for im in ims}):
        label = label_path_for(image)
        assert label is not None
        if label in label_owner:
            fatal.append(Problem(str(image), 0, f"shares the label file {label.name} with {label_owner[label].name}",
                                 "give every image its own file name stem", PAIRING))
            continue
        label_owner[label] = image
        stat = image.stat()
        digest.update(f"{image}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        entry, problems = _read_one(image, label, nc, nv, digest)
        by_image[image] = entry
        for p in problems:
            policy_skip = p.kind in (VIEW_MISSING, NO_LABEL) and missing_view == "skip"
            (skipped if policy_skip else fatal).append(p)

    for folder in sorted({label.parent for label in label_owner}):
        if not folder.is_dir():
            continue
        for name in sorted(os.listdir(folder)):
            path = folder / name
            if name.endswith(".txt") and path not in label_owner and path.is_file():
                digest.update(f"orphan\0{path}\0".encode())
                skipped.append(Problem(str(path), 0, "label file without an image",
                                       "add its image or delete the label file (it is ignored)", NO_IMAGE))

    entries = sorted((e for e in by_image.values() if e is not None), key=lambda e: e.image)
    position = {e.image: i for i, e in enumerate(entries)}
    splits: dict[str, list[int]] = {}
    for split, images in split_images.items():
        splits[split] = sorted({position[str(im)] for im in images if str(im) in position})
        if not splits[split] and not any(p.kind == FOLDER for p in fatal):
            fatal.append(Problem(str(spec.yaml_path), spec.lines.get(split, 0),
                                 f"split '{split}' has no usable images left",
                                 "fix the problems listed for its files", EMPTY))
    if fatal:
        raise DataError(fatal)
    return DatasetIndex(spec, entries, splits, skipped, digest.hexdigest())


def _read_one(
    image: Path, label: Path, nc: int, nv: int, digest: hashlib._Hash
) -> tuple[Entry | None, list[Problem]]:
    try:
        raw = label.read_bytes()
    except FileNotFoundError:
        digest.update(b"<no label>")
        return None, [Problem(str(image), 0, f"image without a label file (expected {label})",
                              "add the label file with the image's view line (and boxes, if any)", NO_LABEL)]
    except OSError as err:
        return None, [Problem(str(label), 0, f"cannot read the label file ({err.strerror or err})",
                              "check its permissions", "unreadable")]
    digest.update(raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, [Problem(str(label), 0, "not a UTF-8 text file", "save the label file as plain text",
                              "text")]
    result = parse_label(text, nc, nv, file=str(label))
    if result.label is None or result.label.view is None:
        return None, result.problems
    return Entry(str(image), str(label), result.label.boxes, result.label.view), result.problems
