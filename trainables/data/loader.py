"""The data layer's entry points: ``load_data`` (a config -> DecodedData) and ``iterate_batches``."""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from trainables.config import DataConfig
from trainables.data import cache
from trainables.data.augment import augment_batch
from trainables.data.decode import PAD_VALUE, decode_index
from trainables.data.errors import DataError
from trainables.data.folds import fold_split
from trainables.data.labels import COORD_TOLERANCE, Problem
from trainables.data.mosaic import mosaic_batch
from trainables.data.provenance import check_one_key
from trainables.data.splits import group_keys, group_split, leak_warning
from trainables.data.synthetic import synthetic_data
from trainables.data.types import DecodedData
from trainables.data.yolo_reader import read_yolo
from trainables.wording import counted

GROUPS = "groups"


@dataclass
class LoadReport:
    """How a dataset was loaded: files left out (with reasons) and whether the cache answered."""

    skipped: list[Problem] = field(default_factory=list)
    cache_hit: bool = False
    cache_path: Path | None = None
    seconds: float = 0.0
    keys: dict[str, int] = field(default_factory=dict)  # pseudonym key fingerprint -> frames it named


def load_dataset(
    yaml_path: str | Path, imgsz: int, missing_view: str = "skip", progress: bool = False,
    cache_root: Path | None = None,
) -> tuple[DecodedData, LoadReport]:
    """Read, validate, decode (or fetch from the cache) a data.yaml dataset, keeping its own split folders.

    Raises :class:`DataError` for fatal problems, frames named under two pseudonym keys among them
    (trainables/data/provenance.py). ``report.skipped`` lists the files left out.
    """
    start = time.perf_counter()
    index = read_yolo(yaml_path, missing_view=missing_view)
    keys = check_one_key((e.image for e in index.entries), str(yaml_path))  # before decoding; a cache hit too
    settings = {"imgsz": imgsz, "missing_view": missing_view, "tolerance": COORD_TOLERANCE, "pad": PAD_VALUE}
    key = cache.fingerprint(index.source_hash, settings)
    cached = cache.load(key, cache_root)
    if cached is not None:
        data, skipped = cached
        report = LoadReport(skipped, True, cache.entry_dir(key, cache_root))
    else:
        data, corrupt = decode_index(index, imgsz, key, progress=progress)
        skipped = index.skipped + corrupt
        _check_splits(data, corrupt, str(index.spec.yaml_path))
        path = None
        try:
            path = cache.save(data, skipped, cache_root)
        except OSError as err:  # a full or read-only disk costs speed, not correctness
            print(f"cache: could not write to {cache.cache_dir()} ({err}); set MTL_STUDY_CACHE", file=sys.stderr)
        report = LoadReport(skipped, False, path)
    report.keys = keys
    report.seconds = time.perf_counter() - start
    return data, report


def _check_splits(data: DecodedData, corrupt: list[Problem], source: str) -> None:
    empty = [name for name, idx in data.splits.items() if len(idx) == 0]
    if empty:
        raise DataError(corrupt + [Problem(source, 0, f"split '{name}' has no decodable images",
                                           "replace the unreadable images listed above", "empty")
                                   for name in empty])


def apply_groups(data: DecodedData, cfg: DataConfig, seed: int) -> DecodedData:
    """Recompute groups with ``cfg.group_regex``; with ``cfg.split == "patient"`` re-split all images by group."""
    try:
        groups, unmatched = group_keys(data.files, cfg.group_regex)
    except (ValueError, re.error) as err:
        raise DataError([Problem("data.group_regex", 0, f"{cfg.group_regex!r} is not usable ({err})",
                                 "give a regex whose first capture group is the patient id", GROUPS)]) from None
    data = dataclasses.replace(data, groups=groups)
    if cfg.split != "patient":
        return data
    if unmatched:
        raise DataError([Problem(unmatched[0], 0, f"file name does not match the group regex {cfg.group_regex!r} "
                                 f"(files that do not: {len(unmatched)})",
                                 "set data.group_regex so its first capture group is the patient id, "
                                 "or use data.split=folders", GROUPS)])
    everything = np.unique(np.concatenate(list(data.splits.values())))  # (n,) each image once
    try:
        if cfg.folds:
            parts = _fold_parts(data, groups, everything, cfg, seed)
        else:
            parts = group_split(groups[everything], cfg.val_fraction, cfg.test_fraction, seed)
    except ValueError as err:
        raise DataError([Problem("data.split=patient", 0, str(err),
                                 "use data.split=folders or smaller val/test fractions", GROUPS)]) from None
    return dataclasses.replace(data, splits={name: everything[idx] for name, idx in parts.items()})


def _fold_parts(data: DecodedData, groups: np.ndarray, everything: np.ndarray, cfg: DataConfig,
                seed: int) -> dict[str, np.ndarray]:
    """Outer fold ``cfg.fold`` of ``cfg.folds`` over ``everything`` (trainables/data/folds.py): positions into it."""
    position = np.full(len(groups), -1, np.int64)
    position[everything] = np.arange(len(everything))
    boxes = data.boxes[position[data.boxes[:, 0].astype(np.int64)] >= 0].copy()
    boxes[:, 0] = position[boxes[:, 0].astype(np.int64)]
    return fold_split(groups[everything], data.views[everything], boxes, cfg.folds, cfg.fold,
                      cfg.val_fraction, seed)


_ANNOUNCED: set[tuple[str, int]] = set()  # (data source, files skipped) already said by this process


def load_data(cfg: DataConfig, seed: int, progress: bool = False) -> DecodedData:
    """The one entry point: ``cfg.source`` is "synthetic" or a path to a data.yaml.

    ``seed`` draws the synthetic frames and the patient split. Skipped files are announced on
    stderr in one line, once per process and data set (``python -m study.data check`` lists them). Raises
    :class:`DataError`.
    """
    if cfg.source == "synthetic":
        data = synthetic_data(cfg.synthetic_train, cfg.synthetic_val, cfg.synthetic_test, cfg.imgsz, seed)
    else:
        data, report = load_dataset(cfg.source, cfg.imgsz, cfg.missing_view, progress)
        if report.skipped and (str(cfg.source), len(report.skipped)) not in _ANNOUNCED:
            _ANNOUNCED.add((str(cfg.source), len(report.skipped)))  # once per process: a study reads it per re-run
            print(f"data: {counted(len(report.skipped), 'file')} skipped (run `python -m study.data check "
                  f"{cfg.source}` for the list)", file=sys.stderr)
    data = apply_groups(data, cfg, seed)
    if cfg.split == "folders":
        warning = leak_warning(data.groups, data.splits)
        if warning:
            print(warning, file=sys.stderr, flush=True)
    return data


def iterate_batches(
    data: DecodedData,
    split: str,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    augment: DataConfig | None = None,
    drop_last: bool = False,
    mosaic: bool = False,
) -> Iterator[tuple[Tensor, Tensor, Tensor, np.ndarray]]:
    """Batches of one split, converted and (optionally) augmented on ``device``.

    Yields ``(images, targets, views, indices)``: images (B, 3, S, S) float32 in [0, 1]; targets
    (K, 6) float32 ``[batch_index, class, x1, y1, x2, y2]`` pixels; views (B,) int64 (both on
    ``device``); indices (B,) int64 numpy positions in ``data`` (to map predictions back to images).
    ``augment``: a DataConfig whose ``augment`` flag and jitter ranges are applied, or None.
    ``generator``: a CPU generator for the shuffle and the augmentation draws (deterministic per seed).
    ``mosaic``: with ``augment``, every batch becomes 4-frame mosaics of same-view frames (the view label
    stays true) carrying the scale / translate jitter; the other augmentation then adds colour and flips.
    """
    order = data.splits[split]
    if shuffle:
        order = order[torch.randperm(len(order), generator=generator).numpy()]
    device = torch.device(device)
    pin = device.type == "cuda"
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]  # (B,)
        raw = torch.from_numpy(data.images[idx])  # (B, 3, S, S) uint8, a copy
        if pin:
            raw = raw.pin_memory()
        images = raw.to(device, non_blocking=pin).float().div_(255.0)  # (B, 3, S, S)
        targets = torch.from_numpy(data.boxes_of(idx)).to(device)  # (K, 6)
        views = torch.from_numpy(data.views[idx]).to(device)  # (B,)
        if augment is not None and augment.augment:
            jitter = augment
            if mosaic:
                images, targets, views, _ = mosaic_batch(images, targets, views, generator, same_view=True,
                                                         scale=augment.scale, translate=augment.translate)
                jitter = dataclasses.replace(augment, scale=0.0, translate=0.0)  # one geometric warp, not two
            images, targets = augment_batch(images, targets, jitter, generator)
        yield images, targets, views, idx
