"""A card's intended use and limitations, written from its own facts (data size, label consistency, views,
classes, split, precision, fold), so that what it warns of is this model's and never a stock paragraph alone."""

from __future__ import annotations

from typing import Any

INTENDED_USE = (
    "Research: studying how well one network (or two, for the dual model) detects the labelled findings and names "
    "the image's view on frames like its training frames, and at what cost. It is not a medical device and was not "
    "validated for any clinical decision: every output is for a qualified reader to check, and its scores hold for "
    "data like the data described here only.")


def limitations(card: dict[str, Any]) -> list[str]:
    """The limitations the card's facts show, most important first (one sentence or two each)."""
    data, model, training = card["data"], card["model"], card["training"]
    heldout = card.get("heldout") or {}
    out: list[str] = []
    if data["source"] == "synthetic":
        out.append("Trained and scored on synthetic frames: its scores say nothing about real images.")
    out.append(_size(data, heldout))
    consistency = data.get("label_consistency")
    if consistency:
        out.append(f"Label noise: {consistency['mixed_view_clips']} of {consistency['clips']} training clips carry "
                   f"frames labelled with different views; {consistency['frames_agreeing_with_clip']:.1%} of the "
                   "training frames agree with their clip's majority view. Boxes come from one set of labels whose "
                   "agreement between readers was not measured: every score is against these labels.")
    else:
        out.append("Label noise was not measured (no clip names to compare frames within a clip, or the data is not "
                   "here); boxes come from one set of labels whose agreement between readers was not measured.")
    rare = _rare_classes(data)
    if rare:
        out.append(f"Few examples: {rare}; scores of those classes rest on few boxes and their intervals are wide.")
    if data["views"]:
        out.append(f"Views covered: {', '.join(data['views'])} only; a frame of any other view still gets one of "
                   "these labels (there is no 'other' class).")
    if data["classes"]:
        out.append(f"Findings covered: {', '.join(data['classes'])} boxes only, at {data['imgsz']} px (frames are "
                   "letterboxed to that size; detail smaller than a few pixels there is lost).")
    if data["split"]["by"] != "patient":
        out.append("Its split is the data set's own folders, not dealt by patient: a patient may be in training and "
                   "test, and the test scores then measure memory as much as generalisation.")
    chosen = card.get("chosen") or {}
    if chosen.get("folds"):
        out.append(f"These weights are fold {chosen['fold']}'s model: trained on the other {chosen['folds'] - 1} "
                   f"folds' patients only (about {(chosen['folds'] - 1) / chosen['folds']:.0%} of the development "
                   "patients, less its validation share); the study made no model from every patient.")
    if training["precision"] != "fp32":
        out.append(f"Trained in {training['precision']}; the ONNX graph computes in float32 (checked against "
                   "PyTorch's float32 output within the export's tolerance) and the held-out scores were measured "
                   "by PyTorch at the training precision, so the ONNX model's scores may differ in the last digits.")
    if "candidates" in model["outputs"]:
        out.append("Non-maximum suppression is not in the ONNX graph: finish as the card's model section says, or the "
                   "boxes are not those the scores were measured on.")
    out.append("Not measured: other machines, sites, operators, patient populations or acquisition settings than "
               "those of this data set.")
    return out


def _size(data: dict[str, Any], heldout: dict[str, Any]) -> str:
    splits = data.get("splits") or {}
    if not data.get("available") or "train" not in splits:
        return ("Data size: the training data was not read where this card was written "
                f"({data.get('reason', 'unknown')}); its patient counts are not on this card.")
    parts = [f"{_count(s['patients'], 'patient')} ({_count(s['frames'], 'frame')}) in {name}"
             for name, s in splits.items()]
    text = f"Small data: {', '.join(parts)}."
    procedure = heldout.get("procedure") or {}
    if procedure.get("interval_unit") == "fold":
        text += (f" The held-out estimate pools {procedure.get('n_folds')} folds of unseen patients; its 95% "
                 "intervals are over folds and wide at this size.")
    elif procedure:
        text += (" The held-out intervals are over seeds on one test split: they cover training randomness, not "
                 "which patients were tested.")
    return text


def _rare_classes(data: dict[str, Any]) -> str:
    """``PR 7 boxes in 5 frames`` for each class with under a tenth of the most common class's training boxes."""
    train = (data.get("splits") or {}).get("train") or {}
    boxes, frames = train.get("boxes_per_class") or {}, train.get("frames_with_class") or {}
    if not boxes or max(boxes.values()) == 0:
        return ""
    most = max(boxes.values())
    return "; ".join(f"{name} {n} boxes in {frames.get(name, 0)} training frames" for name, n in boxes.items()
                     if n < most / 10)


def _count(n: int, noun: str) -> str:
    """``1 patient``, ``40 patients``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
