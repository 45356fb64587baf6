"""UPGrad: project each task's gradient onto the cone where no task's loss increases, then average."""

from __future__ import annotations

from torch import Tensor

from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register


@register("upgrad")
class UPGrad(GramianBalancer):
    """UPGrad, Jacobian descent (Quinton, Rey, 2024, arXiv:2406.16232), by ``torchjd.aggregation.UPGradWeighting``.

    Each task gradient g_i is projected onto the dual cone of all of them, {x : g_j·x >= 0 for every j}
    (the directions that increase no task's loss to first order), and the projections are averaged.
    On the Gramian this is one small quadratic program per task (min_v v^T G v subject to v >= e_i,
    solved by quadprog on the Gramian normalised by its trace, with 1e-4 added to its diagonal); the
    weights are the sum of the T solutions divided by T. When no two gradients conflict every g_i is in
    the cone already and the result is their mean.

    Acts on the shared features' gradients (``level = "features"``, trainables/balancing/gramian.py);
    ``upgrad_params`` is the same weighting on the trunk parameters' Jacobian, as in the paper. Weights
    times T (``mean_scale``): with no conflict, exactly ``equal``'s sum. Needs quadprog and qpsolvers
    (torchjd's ``quadprog_projector`` extra, a dependency of this project).

    Hyperparameters: none.
    """

    def __init__(self, num_tasks: int) -> None:
        from torchjd.aggregation import UPGradWeighting

        super().__init__(num_tasks)
        self.upgrad = UPGradWeighting()

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        return self.upgrad(gram_matrix)

