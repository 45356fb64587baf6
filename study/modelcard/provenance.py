"""What a model was made from: its data (fingerprints, patients and frames per split, label consistency), the
rule that dealt its patients, the precision it trained in and the code that trained and exported it.

The data facts come from the checkpoint alone: its config rebuilds its own split (study/heldout/scoring.py), and a
data set whose rebuilt test patients are not the recorded ones is not described as this model's (a warning, and
the card says so). No path of this machine is written: a data.yaml is named ``FOLDER/data.yaml`` and a weights
file by its name (as study/publish.py does), patients only by counts and a fingerprint of the set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from study.errors import UsageError
from study.store.manifest import describe_code, project_code_state
from trainables.config import DataConfig, TrialConfig


def shareable_source(source: str) -> str:
    """``synthetic``, or a data.yaml as ``FOLDER/data.yaml`` (no path of this machine)."""
    if source == "synthetic":
        return source
    path = Path(source)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def shareable_config(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat config with its paths made shareable: the data.yaml as ``FOLDER/data.yaml``, weights by name."""
    out = dict(flat)
    out["data.source"] = shareable_source(str(out.get("data.source", "")))
    if out.get("model.weights"):
        out["model.weights"] = Path(str(out["model.weights"])).name
    return out


def split_rule(cfg: DataConfig, seed: int) -> str:
    """One sentence: how the model's patients were dealt into train, validation and test."""
    if cfg.split == "folders":
        return ("the data set's own train/val/test folders (not dealt by patient: a patient may sit in two of them; "
                "the study warns when one does)")
    head = (f"whole patients (the file name's pseudonym, regex {cfg.group_regex!r}) dealt with seed {seed}")
    if cfg.folds:
        return (f"{head} into {cfg.folds} outer folds stratified by the views and classes each patient carries; "
                f"test = fold {cfg.fold}'s patients, the other folds' patients split again by patient for "
                f"validation (val_fraction {cfg.val_fraction:g}) and training")
    return (f"{head}: {cfg.test_fraction:g} of the patients to test, {cfg.val_fraction:g} to validation, the rest "
            "to training")


def training_facts(state: dict[str, Any]) -> dict[str, Any]:
    """How it trained: the precision and memory format it ran in (``state["numerics"]``), epoch, EMA, seconds."""
    numerics = state.get("numerics") or {}
    return {"precision": numerics.get("precision", "fp32 (not recorded: a checkpoint from before bf16)"),
            "memory_format": numerics.get("memory_format", "not recorded"), "epoch": state.get("epoch"),
            "ema_weights": bool(state.get("ema")), "train_seconds": state.get("train_seconds")}


def data_facts(state: dict[str, Any], path: Path | str, fallback_seed: int | None = None) -> dict[str, Any]:
    """The model's data: source, classes, views, the split rule, and where the data set is here: its fingerprint,
    its pseudonym keys, frames and patients per split, boxes per class, views per split and the training clips'
    label consistency. ``available`` False (with ``reason``) where the data set cannot be read here or its split
    does not rebuild to the checkpoint's test patients."""
    from trainables.data.errors import DataError
    from trainables.data.loader import load_data
    from trainables.data.splits import split_seed_of

    cfg = TrialConfig.from_flat(dict(state["config"]))
    seed = split_seed_of(cfg.data, cfg.train.seed if fallback_seed is None else fallback_seed)
    facts: dict[str, Any] = {
        "source": shareable_source(cfg.data.source), "imgsz": cfg.data.imgsz,
        "classes": list(state.get("names", [])), "views": list(state.get("view_names", [])),
        "split": {"by": cfg.data.split, "seed": seed, "folds": cfg.data.folds, "fold": cfg.data.fold,
                  "val_fraction": cfg.data.val_fraction, "test_fraction": cfg.data.test_fraction,
                  "test_patients": cfg.data.test_patients, "rule": split_rule(cfg.data, seed)}}
    try:
        data = load_data(cfg.data, seed=seed)
        from study.heldout.scoring import check_patients

        check_patients(cfg, data, seed, path)
    except (DataError, UsageError, OSError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:300]
        print(f"warning: model card: the training data is not described ({reason})", file=sys.stderr)
        return {**facts, "available": False, "reason": reason}
    return {**facts, "available": True, **describe_data(data)}


def describe_data(data: Any) -> dict[str, Any]:
    """A DecodedData's facts: fingerprint, pseudonym keys, and per split frames, patients, views and boxes."""
    from trainables.data.provenance import keys_of

    splits = {}
    for name, idx in data.splits.items():
        if not len(idx):
            continue
        boxes = data.boxes[np.isin(data.boxes[:, 0].astype(np.int64), idx)]  # (K', 6) rows of this split's frames
        per_class = np.bincount(boxes[:, 1].astype(np.int64), minlength=data.num_classes)  # (C,)
        framed = [len(np.unique(boxes[boxes[:, 1] == c, 0])) for c in range(data.num_classes)]
        views = np.bincount(data.views[idx], minlength=data.num_views)  # (V,) frames per view
        splits[name] = {"frames": len(idx), "patients": len(set(data.groups[idx].tolist())),
                        "frames_per_view": dict(zip(data.view_names, map(int, views), strict=True)),
                        "boxes_per_class": dict(zip(data.names, map(int, per_class), strict=True)),
                        "frames_with_class": dict(zip(data.names, map(int, framed), strict=True))}
    keys = keys_of(data.files.tolist()) if len(data.files) else {}
    return {"fingerprint": data.fingerprint, "pseudonym_keys": {k: len(v) for k, v in keys.items()},
            "splits": splits, "label_consistency": _clip_consistency(data)}


def _clip_consistency(data: Any) -> dict[str, Any] | None:
    """The training frames' view labels against their clip's (trainables/metrics/classification.py): how many
    clips mix views, and the share of frames that agree with their clip's majority; None without clip names."""
    from trainables.data.clips import clip_ids
    from trainables.metrics.classification import clip_view_metrics

    idx = data.splits.get("train", np.zeros(0, np.int64))
    if not len(idx) or not len(data.files):
        return None
    views = data.views[idx]
    onehot = np.eye(data.num_views)[views]  # (N, V): the labels themselves as the "prediction"
    found = clip_view_metrics(clip_ids(data.files[idx]), views, onehot)
    if not found["n_clips"]:
        return None
    return {"clips": int(found["n_clips"]), "mixed_view_clips": int(found["n_mixed_clips"]),
            "single_frame_clips": int(found["n_single_frame_clips"]),
            "frames_agreeing_with_clip": found["clip_label_agreement"]}


def code_facts(study_dir: Path | None) -> dict[str, Any]:
    """The code that trained it (each sitting of its study's manifest: commit, uncommitted changes, code hash;
    older manifests: their ``git_commit``) and the code exporting it now."""
    exported = project_code_state()
    out: dict[str, Any] = {"exported_with": {**exported, "described": describe_code(exported)}, "trained_with": []}
    if study_dir is None or not (study_dir / "manifest.json").is_file():
        return out
    manifest = json.loads((study_dir / "manifest.json").read_text())
    sittings = [{k: r.get(k) for k in ("commit", "dirty", "code")} for r in manifest.get("runs", []) if "code" in r]
    if not sittings and manifest.get("git_commit"):
        sittings = [{"commit": manifest["git_commit"], "dirty": None, "code": None}]
    unique = [dict(t) for t in dict.fromkeys(tuple(s.items()) for s in sittings)]
    out["trained_with"] = [{**s, "described": describe_code(s) if s.get("code") else f"commit {s['commit'][:12]}"}
                           for s in unique]
    out["dataset_fingerprint"] = manifest.get("dataset_fingerprint")
    return out
