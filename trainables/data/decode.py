"""Decode every image of a dataset once into one contiguous letterboxed uint8 array.

Letterbox: scale the image so its longer side is ``S`` (aspect kept), centre it on an ``S x S``
canvas filled with 114 (mid grey, the YOLO convention, so padding is neither black anatomy nor
white text). A normalised box coordinate ``x`` lands at pixel ``x * new_w + left``, where ``new_w``
is the width the image was resized to and ``left`` the padding on its left.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.data.labels import Problem
from trainables.data.splits import DEFAULT_GROUP_REGEX, group_keys
from trainables.data.types import DecodedData
from trainables.data.yolo_reader import DatasetIndex

PAD_VALUE = 114
CORRUPT = "corrupt"
# What PIL raises for broken files; anything else is a bug and should surface.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def letterbox_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """``(new_w, new_h, left, top)``: the resized image's size and its offset on the square canvas."""
    r = size / max(width, height)
    new_w, new_h = max(1, round(width * r)), max(1, round(height * r))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def letterbox(image: Image.Image, size: int, out: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Letterbox a PIL image into ``out`` ((3, S, S) uint8, allocated if None); returns it and the geometry."""
    if out is None:
        out = np.empty((3, size, size), np.uint8)
    new_w, new_h, left, top = geometry = letterbox_geometry(image.width, image.height, size)
    if image.mode.startswith("I;16"):  # 16-bit grey: PIL's convert would clip at 255, so scale to 8 bits
        image = Image.fromarray((np.asarray(image, np.float32) / 257.0 + 0.5).astype(np.uint8))
    resized = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BILINEAR)
    out.fill(PAD_VALUE)
    out[:, top:top + new_h, left:left + new_w] = np.asarray(resized).transpose(2, 0, 1)  # (3, h, w)
    return out, geometry


def letterbox_file(path: str | Path, size: int, out: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Open an image file and :func:`letterbox` it. A JPEG is decoded at a reduced scale (PIL's ``draft``:
    1/2, 1/4 or 1/8) when that still leaves at least ``size`` pixels a side: far faster on large frames,
    but not the same pixels as a full decode, so training (:func:`decode_index`) and ``study.predict``
    both read a still image through here. The geometry is the decoded (maybe reduced) image's, which is
    where its content lies on the canvas."""
    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        return letterbox(im, size, out=out)


def boxes_to_letterbox(boxes: np.ndarray, geometry: tuple[int, ...]) -> np.ndarray:
    """(M, 4) normalised ``x1, y1, x2, y2`` -> (M, 4) pixels in the letterboxed frame."""
    new_w, new_h, left, top = geometry
    scale = np.array([new_w, new_h, new_w, new_h], np.float32)
    offset = np.array([left, top, left, top], np.float32)
    return boxes.astype(np.float32) * scale + offset


def boxes_from_letterbox(boxes: np.ndarray, geometry: tuple[int, ...], width: int, height: int) -> np.ndarray:
    """Inverse of :func:`boxes_to_letterbox` in original pixels: (M, 4) letterboxed-pixel ``x1, y1, x2, y2``
    of a ``width x height`` image -> (M, 4) float64 pixels of that image, clipped to it (a box may reach
    into the padding). ``geometry`` is ``letterbox_geometry(width, height, S)``."""
    new_w, new_h, left, top = geometry
    scale = np.array([width / new_w, height / new_h] * 2)  # original pixels per letterboxed pixel
    offset = np.array([left, top, left, top], np.float64)
    out = (np.asarray(boxes, np.float64).reshape(-1, 4) - offset) * scale
    return np.clip(out, 0.0, np.array([width, height, width, height], np.float64))


class Progress:
    """Decode progress on stderr: a counter line redrawn twice a second in a terminal
    (``decode: 120/1196 images``); elsewhere (logs) only the final line."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.redraw = enabled and sys.stderr.isatty()
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled:
            return
        if done == self.total:
            end = "\r" if self.redraw else ""
            print(f"{end}{self.label}: {done}/{self.total} images in {now - self.start:.1f} s", file=sys.stderr)
        elif self.redraw and now - self.last > 0.5:
            self.last = now
            print(f"\r{self.label}: {done}/{self.total} images", end="", file=sys.stderr, flush=True)


def decode_index(
    index: DatasetIndex, imgsz: int, fingerprint: str, progress: bool = False, workers: int | None = None
) -> tuple[DecodedData, list[Problem]]:
    """Decode ``index``'s images into a :class:`DecodedData`; corrupt images are left out and returned.

    Returns the data (images (N, 3, S, S) uint8; boxes (K, 6) ``[image, class, x1, y1, x2, y2]``
    letterboxed pixels) and the problems of the images that could not be decoded.
    """
    entries = index.entries
    images = np.empty((len(entries), 3, imgsz, imgsz), np.uint8)  # (N, 3, S, S)
    geometry: list[tuple[int, ...] | None] = [None] * len(entries)
    errors: list[str | None] = [None] * len(entries)

    def work(i: int) -> None:
        try:
            _, geometry[i] = letterbox_file(entries[i].image, imgsz, out=images[i])
        except _DECODE_ERRORS as err:
            errors[i] = str(err) or type(err).__name__

    # PIL releases the GIL while decoding, so threads give real parallelism here.
    n_workers = workers or min(8, os.cpu_count() or 1)
    bar = Progress("decode", len(entries), progress)
    with ThreadPoolExecutor(n_workers) as pool:
        for done, _ in enumerate(pool.map(work, range(len(entries))), start=1):
            if done % 64 == 0 or done == len(entries):
                bar.update(done)

    problems = [Problem(entries[i].image, 0, f"cannot decode the image ({errors[i]})",
                        "replace the file with a readable image (it is skipped)", CORRUPT)
                for i in range(len(entries)) if errors[i] is not None]
    keep = np.array([e is None for e in errors], bool)
    new_position = np.cumsum(keep) - 1  # old index -> index among kept images
    rows = []
    for i in np.flatnonzero(keep):
        b = entries[i].boxes  # (M, 5) class, x1, y1, x2, y2 normalised
        if len(b):
            pixels = boxes_to_letterbox(b[:, 1:], geometry[i])  # type: ignore[arg-type]
            rows.append(np.column_stack([np.full(len(b), new_position[i], np.float32), b[:, :1], pixels]))
    boxes = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 6), np.float32)
    files = np.array([e.image for e, k in zip(entries, keep, strict=True) if k], dtype=str)
    splits = {name: new_position[[i for i in idx if keep[i]]].astype(np.int64)
              for name, idx in index.splits.items()}
    data = DecodedData(
        images=images[keep] if not keep.all() else images,
        boxes=boxes,
        views=np.array([e.view for e, k in zip(entries, keep, strict=True) if k], np.int64),
        groups=group_keys(files, DEFAULT_GROUP_REGEX)[0],
        splits=splits,
        names=index.spec.names,
        view_names=index.spec.view_names,
        fingerprint=fingerprint,
        files=files,
    )
    return data, problems
