"""Gradient interference between detection and classification on the shared trunk.

Measured on a few fixed training batches (the first ones, in order, without augmentation), so the
number changes only because the model changes, and measured the same way for every balancer: the
raw task losses' gradients, before any weighting or surgery.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data.loader import iterate_batches
from trainables.data.types import DecodedData
from trainables.losses import task_losses
from trainables.precision import Numerics


def gradient_interference(
    model: nn.Module, data: DecodedData, cfg: TrialConfig, device: torch.device, tasks: list[str],
    view_class_weights: torch.Tensor | None = None, numerics: Numerics | None = None,
) -> dict[str, float]:
    """Cosine between ∇_θ L_det and ∇_θ L_view over all trunk parameters θ, and both norms.

    ``view_class_weights`` (V,): the weights the training view loss uses (``loss.view_class_weights``),
    so the measured view gradient is the one training follows. ``numerics``: the forward pass runs at the
    training step's precision and memory format (fp32 by default); the gradients, norms and cosine are
    float32 either way.

    Returns ``grad.cosine``, ``grad.norm_det``, ``grad.norm_view`` averaged over
    ``cfg.train.interference_batches`` batches; NaN when the model has no shared trunk (dual and
    single-task models: no shared weights, so no interference by construction).
    """
    numerics = numerics or Numerics.fp32(device)
    params = [p for p in model.trunk_parameters() if p.requires_grad]
    nan = {"grad.cosine": math.nan, "grad.norm_det": math.nan, "grad.norm_view": math.nan}
    if not params or tasks != ["det", "view"] or cfg.train.interference_batches < 1:
        return nan
    was_training = model.training
    model.train()  # the gradients training sees (BatchNorm in batch mode); no step is taken
    # BatchNorm running stats must not move during a measurement
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    cosines, norms_det, norms_view = [], [], []
    batches = iterate_batches(
        data, "train", cfg.data.batch, shuffle=False, generator=None, device=device, augment=None
    )
    for i, (images, targets, views, _) in enumerate(batches):
        if i >= cfg.train.interference_batches:
            break
        with numerics.autocast():
            det_out, cls_logits = model(numerics.images(images))
        _, losses = task_losses(det_out, cls_logits, targets, views, model, cfg.loss, view_class_weights)
        g_det = _flat_grad(losses[0], params)
        g_view = _flat_grad(losses[1], params)
        n_det, n_view = g_det.norm(), g_view.norm()
        cosines.append(float(g_det @ g_view / (n_det * n_view).clamp_min(1e-12)))
        norms_det.append(float(n_det))
        norms_view.append(float(n_view))
    model.load_state_dict(saved, strict=False)
    model.train(was_training)
    if not cosines:
        return nan
    return {
        "grad.cosine": sum(cosines) / len(cosines),
        "grad.norm_det": sum(norms_det) / len(norms_det),
        "grad.norm_view": sum(norms_view) / len(norms_view),
    }


def _flat_grad(loss: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """(P,) gradient of ``loss`` over ``params``, zeros for parameters it does not reach."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                      for g, p in zip(grads, params, strict=True)])
