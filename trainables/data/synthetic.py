"""A seeded generator of echo-like frames with jets to detect and a view to classify.

Every frame: a fan-shaped sector (the ultrasound field of view) of speckled grey tissue on black,
dark chambers whose arrangement is the view, and 0-2 colour-Doppler-like jets.
- 3 views differ in layout: four chambers in a 2x2 grid ("a4c"), one long chamber over two small
  ones ("plax"), one round chamber with a small one above it ("psax").
- 4 jet classes differ in colour (red, blue, green, yellow: separable by hue alone), shape
  (wide, tall, round, tilted ellipse) and home position, with a mosaic texture like Doppler.
- Boxes are exact: the min / max pixel extent of each jet's own mask, in pixel-edge coordinates
  (a jet covering columns 10..19 has x1 = 10, x2 = 20).
Built in numpy on whole chunks of frames (no per-pixel Python), so it makes thousands of 128 px
frames per second; the same seed gives the same frames whatever the split sizes.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from trainables.data.types import DecodedData

VERSION = 1  # bump when the drawing changes (it is part of the fingerprint)
NAMES = ("jet_red", "jet_blue", "jet_green", "jet_yellow")
VIEW_NAMES = ("a4c", "plax", "psax")
CHUNK = 64  # frames drawn together; fixed so that results do not depend on split sizes
FRAMES_PER_GROUP = 8  # consecutive frames share a synthetic "patient"

JET_COLOURS = np.array([[0.90, 0.15, 0.10], [0.10, 0.35, 0.95], [0.15, 0.85, 0.30], [0.95, 0.85, 0.10]], np.float32)
# per class: centre x, centre y, semi-axis x, semi-axis y, rotation (radians); normalised units
JET_SHAPES = np.array([
    [0.33, 0.42, 0.13, 0.06, 0.0],
    [0.67, 0.42, 0.06, 0.13, 0.0],
    [0.36, 0.72, 0.07, 0.07, 0.0],
    [0.64, 0.72, 0.12, 0.05, 0.8],
], np.float32)
# per view: up to 4 chambers (centre x, centre y, semi-axis x, semi-axis y); zero axes = unused
CHAMBERS = np.array([
    [[0.40, 0.40, 0.09, 0.13], [0.60, 0.40, 0.09, 0.13], [0.40, 0.70, 0.10, 0.12], [0.60, 0.70, 0.10, 0.12]],
    [[0.50, 0.45, 0.28, 0.07], [0.62, 0.70, 0.10, 0.09], [0.36, 0.72, 0.07, 0.06], [0, 0, 0, 0]],
    [[0.50, 0.58, 0.17, 0.17], [0.50, 0.28, 0.06, 0.05], [0, 0, 0, 0], [0, 0, 0, 0]],
], np.float32)
JETS_PER_FRAME_P = (0.25, 0.5, 0.25)  # probability of 0, 1, 2 jets


def _ellipses(x: np.ndarray, y: np.ndarray, p: np.ndarray, angle: np.ndarray | None = None) -> np.ndarray:
    """Inside-masks of ellipses. x, y: (S, S) pixel centres; p: (..., 4) cx, cy, ax, ay -> (..., S, S)."""
    dx = x - p[..., 0, None, None]
    dy = y - p[..., 1, None, None]
    if angle is not None:
        c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    ax = np.maximum(p[..., 2, None, None], 1e-6)
    ay = np.maximum(p[..., 3, None, None], 1e-6)
    inside = (dx / ax) ** 2 + (dy / ay) ** 2 < 1.0
    return inside & (p[..., 2, None, None] > 0)


def _extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, S, S) masks -> (B, 4) ``x1, y1, x2, y2`` pixel edges, and (B,) whether the mask is non-empty."""
    cols, rows = mask.any(axis=1), mask.any(axis=2)  # (B, S) each
    size = mask.shape[-1]
    x1 = cols.argmax(axis=1)
    x2 = size - cols[:, ::-1].argmax(axis=1)
    y1 = rows.argmax(axis=1)
    y2 = size - rows[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32), cols.any(axis=1)


def draw_frames(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` frames.

    Returns images (n, 3, S, S) uint8, boxes (K, 6) float32 ``[frame, class, x1, y1, x2, y2]`` in
    pixels, and views (n,) int64.
    """
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(centres, centres)  # (S, S) each, normalised
    # the fan: apex at the top centre, 43 degrees to each side, depth 0.95
    r = np.hypot(x - 0.5, y - 0.02)
    fan = (r < 0.95) & (np.abs(np.arctan2(x - 0.5, y - 0.02)) < 0.75)  # (S, S)

    views = rng.integers(0, len(VIEW_NAMES), n)  # (n,)
    shift = rng.uniform(-0.03, 0.03, (n, 1, 2)).astype(np.float32)
    zoom = rng.uniform(0.9, 1.1, (n, 1, 1)).astype(np.float32)
    chambers = CHAMBERS[views].copy()  # (n, 4, 4)
    chambers[..., :2] = 0.5 + (chambers[..., :2] - 0.5) * zoom + shift
    chambers[..., 2:] *= zoom
    blood = _ellipses(x, y, chambers).any(axis=1)  # (n, S, S)

    # speckle: Rayleigh-distributed brightness, fading with depth
    u = rng.random((n, size, size), dtype=np.float32)
    speckle = np.sqrt(-2.0 * np.log1p(-u)) * 0.5  # (n, S, S) Rayleigh, mean ~0.63
    tissue = speckle * (0.55 - 0.3 * r) * np.where(blood, 0.15, 1.0) * fan  # (n, S, S)
    img = np.broadcast_to(tissue[:, None], (n, 3, size, size))  # (n, 3, S, S) grey

    n_jets = rng.choice(3, n, p=JETS_PER_FRAME_P)  # (n,)
    classes = np.argsort(rng.random((n, len(NAMES))), axis=1)[:, :2]  # two distinct classes per frame
    mosaic = 0.7 + 0.3 * rng.random((n, size, size), dtype=np.float32)  # (n, S, S) Doppler-like texture
    box_rows = []
    for slot in range(2):
        has = n_jets > slot  # (n,)
        cls = classes[:, slot]
        shape = JET_SHAPES[cls].copy()  # (n, 5)
        shape[:, :2] += rng.uniform(-0.06, 0.06, (n, 2))
        shape[:, 2:4] *= rng.uniform(0.8, 1.25, (n, 2))
        shape[:, 4] += rng.uniform(-0.2, 0.2, n)
        mask = _ellipses(x, y, shape[:, :4], angle=shape[:, 4]) & has[:, None, None]  # (n, S, S)
        colour = JET_COLOURS[cls][:, :, None, None] * mosaic[:, None]  # (n, 3, S, S)
        img = np.where(mask[:, None], colour, img)
        extent, drawn = _extent(mask)
        frames = np.flatnonzero(drawn)
        box_rows.append(np.column_stack([frames, cls[frames], extent[frames]]).astype(np.float32))

    boxes = np.concatenate(box_rows)
    boxes = boxes[np.argsort(boxes[:, 0], kind="stable")]  # (K, 6) sorted by frame
    images = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # (n, 3, S, S)
    return images, boxes, views.astype(np.int64)


def synthetic_data(train: int, val: int, test: int, imgsz: int, seed: int) -> DecodedData:
    """A :class:`DecodedData` of synthetic frames: splits of the given sizes, deterministic for ``seed``."""
    sizes = {"train": train, "val": val, "test": test}
    images, boxes, views, groups, files, splits = [], [], [], [], [], {}
    offset = 0
    for code, (split, count) in enumerate(sizes.items()):
        for start in range(0, count, CHUNK):
            # whole chunks from their own stream, cut to size: frame i is the same whatever the split sizes
            rng = np.random.default_rng([seed, code, start // CHUNK])
            n = min(CHUNK, count - start)
            im, bx, vw = draw_frames(rng, CHUNK, imgsz)
            bx = bx[bx[:, 0] < n]
            bx[:, 0] += offset + start
            images.append(im[:n])
            boxes.append(bx)
            views.append(vw[:n])
        ids = np.arange(count)
        groups.extend(f"{split}{i // FRAMES_PER_GROUP:04d}" for i in ids)
        files.extend(f"synthetic/{split}{i // FRAMES_PER_GROUP:04d}-{i:06d}.png" for i in ids)
        splits[split] = np.arange(offset, offset + count, dtype=np.int64)
        offset += count
    settings = {"synthetic": VERSION, "sizes": sizes, "imgsz": imgsz, "seed": seed}
    return DecodedData(
        images=np.concatenate(images) if images else np.zeros((0, 3, imgsz, imgsz), np.uint8),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 6), np.float32),
        views=np.concatenate(views) if views else np.zeros(0, np.int64),
        groups=np.array(groups, dtype=str),
        splits=splits,
        names=NAMES,
        view_names=VIEW_NAMES,
        fingerprint=hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest(),
        files=np.array(files, dtype=str),
    )
