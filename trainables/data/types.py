"""The decoded dataset every trial indexes into: one contiguous uint8 array plus plain arrays.

Plain numpy arrays only (no Python objects per image), so Ray's object store can hand the same
memory to every trial on a node without copying it, and a cache can be stored without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DecodedData:
    """All images of a dataset, letterboxed to one square size, and their labels.

    images: (N, 3, S, S) uint8, RGB, letterboxed (aspect kept, padded with 114).
    boxes: (K, 6) float32 rows ``[image_index, class, x1, y1, x2, y2]`` in letterboxed pixels,
        sorted by image_index.
    views: (N,) int64 view (image class) index.
    groups: (N,) str patient / group id of each image.
    splits: split name ("train", "val", "test") -> (n,) int64 indices into the N images.
    names: detection class names; view_names: image class names.
    fingerprint: hash of the source content and decode settings (the cache key).
    """

    images: np.ndarray
    boxes: np.ndarray
    views: np.ndarray
    groups: np.ndarray
    splits: dict[str, np.ndarray]
    names: tuple[str, ...]
    view_names: tuple[str, ...]
    fingerprint: str
    files: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # (N,) source paths

    @property
    def imgsz(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def num_views(self) -> int:
        return len(self.view_names)

    def boxes_of(self, indices: np.ndarray) -> np.ndarray:
        """(K', 6) rows for the given images, with column 0 renumbered to the position in ``indices``."""
        starts = np.searchsorted(self.boxes[:, 0], indices, side="left")
        ends = np.searchsorted(self.boxes[:, 0], indices, side="right")
        rows = [
            np.concatenate([np.full((e - s, 1), i, np.float32), self.boxes[s:e, 1:]], axis=1)
            for i, (s, e) in enumerate(zip(starts, ends, strict=True))
            if e > s
        ]
        return np.concatenate(rows) if rows else np.zeros((0, 6), np.float32)
