"""MGDA: the minimum-norm point of the convex hull of the task gradients."""

from __future__ import annotations

from torch import Tensor

from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register


@register("mgda")
class MGDA(GramianBalancer):
    """MGDA (Désidéri, C. R. Math. 2012; as multi-task learning: Sener & Koltun, NeurIPS 2018,
    arXiv:1810.04650), by ``torchjd.aggregation.MGDAWeighting``.

    w = argmin_{w in simplex} ‖Σ_i w_i g_i‖², solved on the Gramian by Sener & Koltun's Frank-Wolfe
    (Algorithm 2: exact line search, at most 100 iterations, stopping when the step is below 1e-3). The
    result is a common descent direction of every task (or zero at a Pareto-stationary point); it tends
    to follow the task with the smallest gradient.

    Acts on the shared features' gradients (``level = "features"``, trainables/balancing/gramian.py):
    Sener & Koltun's MGDA-UB bounds the parameter-level problem by exactly this representation-level
    one. Weights times T (``mean_scale``): orthogonal gradients of equal norm give ``equal``'s sum.

    Hyperparameters: none.
    """

    def __init__(self, num_tasks: int) -> None:
        from torchjd.aggregation import MGDAWeighting

        super().__init__(num_tasks)
        self.mgda = MGDAWeighting()

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        return self.mgda(gram_matrix)
