"""The card itself: one JSON document (``OUT.card.json``) and its Markdown rendering (``OUT.card.md``).

``build_card`` gathers what the other modules of this package find; ``write_card`` writes both files beside the
ONNX file. The JSON's top-level keys: ``card_format``, ``created``, ``model`` (method, architecture, balancer,
parameters, inputs/outputs, ONNX and checkpoint files with their sha256), ``chosen`` (the study, the rule and the
re-run; null for a checkpoint exported by itself), ``training`` (precision, epoch, EMA), ``data`` (provenance.py),
``heldout`` (scores.py: ``procedure`` and ``model``; null with ``heldout_note`` saying why), ``latency``
(latency.py; null with ``latency_note``), ``code``, ``intended_use``, ``limitations``, ``config`` (the flat config,
its paths made shareable).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from search_spaces.registry import method_label
from study.modelcard.choice import Chosen
from study.modelcard.limits import INTENDED_USE, limitations
from study.modelcard.provenance import code_facts, data_facts, shareable_config, training_facts
from study.modelcard.scores import model_scores, procedure_scores, recorded_run
from study.store.atomic import atomic_path

CARD_FORMAT = 1
FINISH = ("score = objectness x best class probability; keep score > conf_thres; class-aware NMS at iou_thres; "
          "at most max_det boxes (trainables/postprocess.py)")


def card_paths(onnx: Path) -> tuple[Path, Path]:
    """``OUT.card.md`` and ``OUT.card.json`` beside ``OUT.onnx``."""
    return onnx.with_suffix(".card.md"), onnx.with_suffix(".card.json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_card(state: dict[str, Any], checkpoint: Path, onnx: Path, outputs: list[str], params: int,
               check: dict[str, Any] | None, latency: dict[str, Any] | None, chosen: Chosen | None = None,
               study_dir: Path | None = None, latency_note: str = "") -> dict[str, Any]:
    """The card's JSON document. ``check``: the ONNX-vs-PyTorch check (max differences, tolerances); ``study_dir``:
    the study a checkpoint exported by itself lies in (``study_of``), None when it lies in none."""
    config = dict(state["config"])
    study = chosen.study_dir if chosen is not None else study_dir
    manifest_dir = chosen.where if chosen is not None else study_dir
    cfg_imgsz = int(config["data.imgsz"])
    card: dict[str, Any] = {
        "card_format": CARD_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {
            "method": method_label(config), "arch": config.get("arch"), "balancer": config.get("balancer.name"),
            "shared_stages": config.get("model.shared_stages"), "size": config.get("model.size"),
            "params": int(params),
            "input": f"images (B, 3, {cfg_imgsz}, {cfg_imgsz}) float32 RGB in [0, 1], letterboxed (pad 114/255)",
            "outputs": outputs, "finish": FINISH if "candidates" in outputs else "",
            "thresholds": {k: config.get(f"train.{k}") for k in ("conf_thres", "iou_thres", "max_det")},
            "onnx": {"file": onnx.name, "bytes": onnx.stat().st_size, "sha256": sha256(onnx), "check": check},
            "checkpoint": {"file": _shown_path(checkpoint, study), "sha256": sha256(checkpoint),
                           "epoch": state.get("epoch")}},
        "chosen": None if chosen is None else {
            "study": chosen.study_dir.name, "method": chosen.method, "rule": chosen.rule, "trial_id": chosen.trial_id,
            "repeat_of": chosen.repeat_of, "seed": chosen.seed, "epoch": chosen.epoch, "fold": chosen.fold,
            "folds": chosen.folds},
        "training": training_facts(state),
        "data": data_facts(state, checkpoint, _study_seed(manifest_dir)),
        **_heldout(chosen, checkpoint, study_dir),
        "latency": latency, "latency_note": latency_note if latency is None else "",
        "code": code_facts(manifest_dir),
        "intended_use": INTENDED_USE,
        "config": shareable_config(config),
    }
    card["limitations"] = limitations(card)
    return card


def write_card(card: dict[str, Any], onnx: Path) -> tuple[Path, Path]:
    """Write ``OUT.card.json`` and ``OUT.card.md`` (atomically) beside ``onnx``; returns their paths."""
    from study.modelcard.markdown import render

    md, js = card_paths(onnx)
    with atomic_path(js) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2, default=str) + "\n")
    with atomic_path(md) as tmp:
        Path(tmp).write_text(render(card))
    return md, js


def _heldout(chosen: Chosen | None, checkpoint: Path, study_dir: Path | None) -> dict[str, Any]:
    if chosen is not None:
        procedure = procedure_scores(chosen.study_dir, chosen.method)
        model = model_scores({**chosen.run, "fold": chosen.fold} if chosen.run else {})  # a fold's own file has none
    else:
        procedure, model = None, model_scores(recorded_run(study_dir, checkpoint)) if study_dir else None
    if procedure is None and model is None:
        note = ("no held-out score: the study ran without --test" if chosen is not None else
                "no held-out score recorded for this checkpoint (export --best STUDY attaches its study's; "
                "python -m study.evaluate CHECKPOINT --split test scores it)")
        return {"heldout": None, "heldout_note": note}
    return {"heldout": {"procedure": procedure, "model": model}, "heldout_note": ""}


def _shown_path(checkpoint: Path, study: Path | None) -> str:
    """The checkpoint as ``NAME/...`` or ``NAME-repeats/...`` when it lies beside its study, else its file name."""
    resolved = checkpoint.resolve()
    if study is not None:
        try:
            return resolved.relative_to(study.resolve().parent).as_posix()
        except ValueError:
            pass
    return resolved.name


def _study_seed(study_dir: Path | None) -> int | None:
    """The study's seed (manifest.json), the split seed of a checkpoint too old to record its own."""
    if study_dir is None or not (study_dir / "manifest.json").is_file():
        return None
    manifest = json.loads((study_dir / "manifest.json").read_text())
    return int(manifest.get("seeds", {}).get("study", manifest.get("settings", {}).get("seed", 0)))
