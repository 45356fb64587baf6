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

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainables.data.datayaml import FOLDER, DataSpec, read_data_yaml
from trainables.data.errors import DataError
from trainables.data.labels import VIEW_MISSING, Problem, parse_label
from trainables.wording import counted

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
    source_hash: sha256 of data.yaml, every label file's bytes and every image's bytes and path relative to
    data.yaml's folder. Content, not modification times: a data set copied or provisioned again (same bytes,
    new mtimes, another folder) is the same data set to the cache and to ``--resume``'s check, which refused
    one such copy (measured: hashing the 46 MiB real set takes 0.07 s, the fastest of 7 reads on a loaded machine).
    """

    spec: DataSpec
    entries: list[Entry]
    splits: dict[str, list[int]]
    skipped: list[Problem] = field(default_factory=list)
    source_hash: str = ""


def label_path_for(image: str) -> str | None:
    """``.../images/a/x.jpg`` -> ``.../labels/a/x.txt``; None if the path has no ``images`` folder.

    Plain strings, not pathlib: this runs once per image and pathlib is several times slower at it
    (measured: docs/benchmarks.md#label-paths).
    """
    marker = f"{os.sep}images{os.sep}"
    if marker not in image:
        return None
    head, tail = image.rsplit(marker, 1)
    return f"{head}{os.sep}labels{os.sep}{os.path.splitext(tail)[0]}.txt"


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursive), sorted absolute paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in filenames if f.lower().endswith(IMAGE_SUFFIXES))
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
    root = spec.yaml_path.parent
    by_image: dict[str, Entry | None] = {}  # None: looked at and left out
    label_owner: dict[str, str] = {}
    split_images: dict[str, list[str]] = {}

    for split, folders in spec.folders.items():
        split_images[split] = []
        for folder in folders:
            images = list_images(folder)
            if not images:
                fatal.append(Problem(str(folder), 0, f"{split} folder holds no images ({', '.join(IMAGE_SUFFIXES)})",
                                     f"fix '{split}' in {spec.yaml_path.name} or add the images", FOLDER))
            unpaired = [im for im in images if label_path_for(im) is None]
            if unpaired:
                fatal.append(Problem(str(folder), 0, f"{counted(len(unpaired), 'image')} outside an 'images' folder: "
                                     "their label files cannot be found",
                                     "put images under .../images/ and their labels under .../labels/", FOLDER))
                continue
            split_images[split].extend(images)

    for image in sorted({im for ims in split_images.values() for im in ims}):
        label = label_path_for(image)
        assert label is not None
        if label in label_owner:
            fatal.append(Problem(image, 0, f"shares the label file {os.path.basename(label)} with "
                                 f"{os.path.basename(label_owner[label])}",
                                 "give every image its own file name stem", PAIRING))
            continue
        label_owner[label] = image
        digest.update(f"{os.path.relpath(image, root)}\0".encode())
        try:
            with open(image, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
        except OSError:  # decoding says what is wrong with it (a corrupt-file problem), not this hash
            digest.update(b"<unreadable>")
        entry, problems = _read_one(image, label, nc, nv, digest)
        by_image[image] = entry
        for p in problems:
            if p.kind in (VIEW_MISSING, NO_LABEL):  # the user's policy decides; say which way it went
                if missing_view == "skip":
                    skipped.append(dataclasses.replace(p, fix=p.fix + " (the image is skipped until then)"))
                else:
                    fatal.append(dataclasses.replace(
                        p, fix=p.fix + "; or leave such images out with missing_view=skip (--missing-view skip)"))
            else:
                fatal.append(p)

    for folder in sorted({os.path.dirname(label) for label in label_owner}):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".txt") and path not in label_owner and os.path.isfile(path):
                digest.update(f"orphan\0{path}\0".encode())
                skipped.append(Problem(path, 0, "label file without an image",
                                       "add its image or delete the label file (it is ignored)", NO_IMAGE))

    entries = sorted((e for e in by_image.values() if e is not None), key=lambda e: e.image)
    position = {e.image: i for i, e in enumerate(entries)}
    splits: dict[str, list[int]] = {}
    other_problems = bool(fatal)  # an emptied split is then a consequence, not news
    for split, images in split_images.items():
        splits[split] = sorted({position[im] for im in images if im in position})
        if not splits[split] and not other_problems:
            fatal.append(Problem(str(spec.yaml_path), spec.lines.get(split, 0),
                                 f"split '{split}' has no usable images left",
                                 "fix the skipped files listed above", EMPTY))
    if fatal and not other_problems:  # emptied by skipped files: show them
        fatal = skipped + fatal
    if fatal:
        raise DataError(fatal)
    return DatasetIndex(spec, entries, splits, skipped, digest.hexdigest())


def _read_one(
    image: str, label: str, nc: int, nv: int, digest: hashlib._Hash
) -> tuple[Entry | None, list[Problem]]:
    try:
        with open(label, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        digest.update(b"<no label>")
        return None, [Problem(image, 0, f"image without a label file (expected {label})",
                              "add the label file with the image's view line (and boxes, if any)", NO_LABEL)]
    except OSError as err:
        return None, [Problem(label, 0, f"cannot read the label file ({err.strerror or err})",
                              "check its permissions", "unreadable")]
    digest.update(raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, [Problem(label, 0, "not a UTF-8 text file", "save the label file as plain text",
                              "text")]
    result = parse_label(text, nc, nv, file=label)
    if result.label is None or result.label.view is None:
        return None, result.problems
    return Entry(image, label, result.label.boxes, result.label.view), result.problems
