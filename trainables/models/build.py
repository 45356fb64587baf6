"""TrialConfig -> the model of its arm: shared, det_only, cls_only (MultiTaskModel) or dual (DualModel)."""

from __future__ import annotations

from torch import nn

from trainables.config import TrialConfig, model_multiples, shared_units
from trainables.models.dual import DualModel, build_classifier
from trainables.models.multitask import MultiTaskModel


def build_model(cfg: TrialConfig, num_classes: int, num_views: int) -> nn.Module:
    """Build the arm's model; the size preset (``model.size``) gives the depth and width multiples.

    The dual classifier's YOLO backbone uses the same depth multiple and its own width
    (``model.cls_width_multiple``); its view head reads ``model.cls_level`` like the shared model's.
    The shared model shares its first ``model.shared_stages`` backbone units (default: all up to the
    view head's level); its view branch has the trunk's width, so at 0 it costs what dual does with
    ``model.cls_width_multiple`` = the model's width (at size n, dual's default).
    """
    m = cfg.model
    depth, width = model_multiples(m)
    head = {"cls_hidden": m.cls_hidden, "cls_dropout": m.cls_dropout, "cls_level": m.cls_level, "cls_grid": m.cls_grid}
    if cfg.arch == "shared":
        return MultiTaskModel(num_classes, num_views, depth, width, **head, shared_stages=shared_units(m))
    if cfg.arch == "det_only":
        return MultiTaskModel(num_classes, num_views, depth, width, **head, classify=False)
    if cfg.arch == "cls_only":
        return MultiTaskModel(num_classes, num_views, depth, width, **head, detect=False)
    if cfg.arch == "dual":
        detector = MultiTaskModel(num_classes, num_views, depth, width, classify=False)
        classifier = build_classifier(m.cls_backbone, num_views, depth, m.cls_width_multiple, **head)
        return DualModel(detector, classifier)
    raise ValueError(f"arch={cfg.arch!r} has no model")
