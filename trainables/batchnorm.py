"""Re-estimate BatchNorm statistics before evaluation ("precise BN").

During training the running mean/variance are an exponential average over past steps, taken
while the weights were still moving. In a study's short trials (tens to hundreds of steps at a
high learning rate) they can lag the final weights badly, so eval mode scores the weights with
statistics of earlier ones. Re-estimating them with the final weights over a few training batches
(no gradient, no augmentation) is the standard remedy (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021; detectron2's PreciseBN) and costs a few no-grad forward passes
(measured: docs/benchmarks.md#precise-batchnorm).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace every BatchNorm's running statistics by their exact average over ``batches``.

    batches: image tensors (B, 3, S, S). Returns the number of batches used (0: nothing changed).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m, m.momentum) for m in norms]
    was_training = model.training
    used = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: the exact mean over the batches seen
        model.train()
        for images in batches:
            model(images)
            used += 1
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return used
