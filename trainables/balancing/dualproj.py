"""DualProj: the mean gradient, projected onto the cone where no task's loss increases."""

from __future__ import annotations

from torch import Tensor

from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register


@register("dualproj")
class DualProj(GramianBalancer):
    """DualProj (the projection of Lopez-Paz & Ranzato's GEM, NeurIPS 2017, arXiv:1706.08840, Eq. 11, applied
    to the mean task gradient as in Quinton & Rey 2024), by ``torchjd.aggregation.DualProjWeighting``.

    The mean gradient g_0 = (1/T) Σ g_i is projected onto the dual cone {x : g_j·x >= 0 for every j}: one
    quadratic program on the Gramian (min_v v^T G v subject to v >= 1/T, quadprog, Gramian normalised by
    its trace, 1e-4 on its diagonal). Where g_0 conflicts with no task it is left as it is.

    Acts on the shared features' gradients (``level = "features"``, trainables/balancing/gramian.py).
    Weights times T (``mean_scale``): with no conflict, exactly ``equal``'s sum. Needs quadprog and
    qpsolvers (torchjd's ``quadprog_projector`` extra, a dependency of this project).

    Hyperparameters: none.
    """

    def __init__(self, num_tasks: int) -> None:
        from torchjd.aggregation import DualProjWeighting

        super().__init__(num_tasks)
        self.dualproj = DualProjWeighting()

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        return self.dualproj(gram_matrix)
