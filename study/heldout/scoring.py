"""A checkpoint scored on a split: what ``study.evaluate`` prints and what the held-out phase records.

The same metric code as training (``trainables.engine.evaluate``: COCO-exact mAP, view accuracy,
clip-level view accuracy, ...), on the data and split named, with the checkpoint's own config for
everything not overridden; and, where the model detects, jet present per valve per clip and per study
(trainables/metrics/clinical.py) at the threshold chosen on the validation split: the one scoring that runs the
model over a second split (val, once), which training's epochs do not pay.

A checkpoint knows its patients: its config carries what decided its split (``data.split_seed``,
``data.folds``, ``data.fold``) and a fingerprint of its test patients (``data.test_patients``). The split is
rebuilt from those alone, wherever the file lies; when the rebuilt test patients are not the recorded ones
(another ``--split-seed``, a changed data set) the checkpoint is refused with one line, never scored on
patients it may have trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.errors import UsageError
from study.store.checkpoints import restore_model
from trainables.data.clips import clip_ids
from trainables.metrics.clinical import JetFrames, frame_labels, frame_scores, jet_presence


def evaluate_state(state: dict[str, Any], split: str = "test", data_source: str | None = None,
                   split_by: str | None = None, seed: int | None = None, device: str = "auto",
                   path: Path | str = "checkpoint", precision: str | None = None) -> dict[str, Any]:
    """Score a checkpoint state on ``split``; returns the result dict that --json writes.

    ``precision``: ``fp32`` / ``bf16`` / ``auto``; None runs the model at the precision it trained at
    (``trainables.precision.checkpoint_numerics``).

    ``metrics`` holds ``<split>.*`` keys, e.g. ``test.map``, ``test.view_accuracy``, ``test.jet_clip_sensitivity_MR``;
    ``jet_chosen_on``: the split the jet thresholds were chosen on ("val"; "" where none was: no detector, or no
    validation split).
    """
    from trainables.data.loader import load_data
    from trainables.data.splits import split_seed_of
    from trainables.engine import predict_split, resolve_device, score_split
    from trainables.precision import checkpoint_numerics

    model, cfg = restore_model(state, path)
    trained = cfg
    overrides: dict[str, Any] = {}
    if data_source is not None:
        overrides["data.source"] = data_source if data_source == "synthetic" else \
            str(Path(data_source).expanduser().resolve())
    if split_by is not None:
        overrides["data.split"] = split_by
    cfg = cfg.replace(**overrides) if overrides else cfg
    seed = split_seed_of(cfg.data, cfg.train.seed) if seed is None else seed
    data = load_data(cfg.data, seed=seed)
    if cfg.data.source == trained.data.source and cfg.data.split == trained.data.split:
        check_patients(trained, data, seed, path)
    if split not in data.splits or len(data.splits[split]) == 0:
        have = [k for k, v in data.splits.items() if len(v)]
        raise UsageError(f"--split {split}: {cfg.data.source} has no '{split}' images (it has {have}); "
                         f"choose one of those{' or --split-by patient' if cfg.data.split == 'folders' else ''}")
    if list(data.names) != list(state.get("names", data.names)) or \
            list(data.view_names) != list(state.get("view_names", data.view_names)):
        raise UsageError(f"{path}: trained on boxes {list(state.get('names', []))} and views "
                         f"{list(state.get('view_names', []))}, but {cfg.data.source} has boxes {list(data.names)} "
                         f"and views {list(data.view_names)}; score it on data with the same classes")
    dev = resolve_device(device)
    numerics = checkpoint_numerics(state, cfg.train, dev, precision)
    module = numerics.module(model.to(dev))
    outputs = predict_split(module, data, split, cfg, dev, numerics)
    raw = score_split(outputs, data, cfg)
    chosen_on = ""
    if outputs.preds and len(data.splits.get("val", ())):  # the jet thresholds: chosen on val, applied here
        val = outputs if split == "val" else predict_split(module, data, "val", cfg, dev, numerics)
        jets = jet_presence(jet_frames(val, data), jet_frames(outputs, data), list(data.names))
        raw.update({f"val.{k}": v for k, v in jets.items()})
        chosen_on = "val"
    metrics = {f"{split}.{k.removeprefix('val.')}": v for k, v in raw.items()}
    return {"checkpoint": str(path), "arch": cfg.arch, "balancer": cfg.balancer.name, "epoch": state.get("epoch"),
            "ema": bool(state.get("ema")), "data": cfg.data.source, "split": split, "split_by": cfg.data.split,
            "split_seed": seed, "images": len(data.splits[split]), "imgsz": cfg.data.imgsz,
            "precision": numerics.precision, "jet_chosen_on": chosen_on,
            "metrics": metrics}


def jet_frames(outputs: Any, data: Any) -> JetFrames:
    """``outputs`` (engine.SplitOutputs) as the jet questions read them: per frame its best score and label per
    class, its clip (from the file name: trainables/data/clips.py) and its patient (the split's group)."""
    idx = outputs.indices
    files = data.files[idx] if len(data.files) else [""] * len(idx)
    return JetFrames(scores=frame_scores(outputs.preds, data.num_classes),
                     labels=frame_labels(outputs.gts, data.num_classes),
                     clips=clip_ids(files), studies=data.groups[idx])


def check_patients(cfg: Any, data: Any, seed: int, path: Path | str) -> None:
    """A UsageError when ``data``'s test patients (the split rebuilt with ``seed``) are not those ``cfg`` recorded
    (``data.test_patients``; nothing to check where it recorded none, a checkpoint from before)."""
    from trainables.data.splits import patients_fingerprint

    recorded = cfg.data.test_patients
    here = patients_fingerprint(data.groups, data.splits.get("test", ()))
    if recorded and here != recorded:
        fold = f", fold {cfg.data.fold} of {cfg.data.folds}" if cfg.data.folds else ""
        raise UsageError(f"{path}: trained with test patients {recorded}, but the {cfg.data.split} split rebuilt "
                         f"here (seed {seed}{fold}) tests patients {here or 'none'}: it may have trained on them; "
                         f"score it on its own split (seed {cfg.data.split_seed}, no --split-seed) and its own data")
