"""IMTL-G: the update whose projections on every task's unit gradient are equal."""

from __future__ import annotations

from torch import Tensor

from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register


@register("imtl_g")
class IMTLG(GramianBalancer):
    """IMTL-G, the gradient half of Impartial Multi-Task Learning (Liu, Li, Kuang, Xue, Chen, Yang, Liao,
    Zhang, ICLR 2021), by ``torchjd.aggregation.IMTLGWeighting``.

    Finds the weights, summing to 1, for which d = Σ_i w_i g_i has the same projection on every unit
    task gradient: d·g_i/‖g_i‖ equal for all i. On the Gramian: w ∝ G⁺ √diag(G) (the pseudo-inverse
    makes it defined for linearly dependent gradients, Quinton & Rey 2024's generalisation); zero weights
    when that vector sums to zero.

    Acts on the shared features' gradients (``level = "features"``, trainables/balancing/gramian.py).
    Weights times T (``mean_scale``): orthogonal gradients of equal norm give ``equal``'s sum. The
    paper's loss half (IMTL-L, learned loss scales) is not part of this balancer.

    Hyperparameters: none.
    """

    def __init__(self, num_tasks: int) -> None:
        from torchjd.aggregation import IMTLGWeighting

        super().__init__(num_tasks)
        self.imtl_g = IMTLGWeighting()

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        return self.imtl_g(gram_matrix)
