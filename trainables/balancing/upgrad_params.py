"""UPGrad on the shared parameters' Jacobian, as in its paper: what acting on the representation saves."""

from __future__ import annotations

from trainables.balancing.registry import register
from trainables.balancing.upgrad import UPGrad


@register("upgrad_params")
class UPGradParams(UPGrad):
    """UPGrad on the trunk parameters' Jacobian (``level = "parameters"``), as in its paper and TorchJD's
    ``mtl_backward``: the same weighting as ``upgrad``, on the Gramian of the tasks' gradients with respect
    to every shared parameter, at the price of up to T backward passes through the trunk and a (T, P)
    Jacobian in memory (trainables/balancing/gramian.py). Kept beside ``upgrad`` so that the study can
    measure what acting on the representation instead changes, in cost and in accuracy.

    Hyperparameters: none.
    """

    level = "parameters"
