"""Aligned-MTL: align the task gradients into an orthogonal, equally long set, then sum."""

from __future__ import annotations

from torch import Tensor

from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register


@register("aligned_mtl")
class AlignedMTL(GramianBalancer):
    """Aligned-MTL (Senushkin, Patakin, Kuznetsov, Konushin, CVPR 2023, arXiv:2305.19000), by
    ``torchjd.aggregation.AlignedMTLWeighting``.

    With G = V Λ V^T (rank r, eigenvalues above T·ε·λ_max kept), the balance transformation
    B = √λ_min · V Λ^{-1/2} V^T turns the task gradients into B·[g_1..g_T], whose Gramian is λ_min·I: the
    condition number of the system is 1, no task dominates and none conflicts. The weights are
    B·(1/T, ..., 1/T), the aligned gradients' mean. ``λ_min`` (TorchJD's ``scale_mode="min"``) is the
    paper's choice of scale; the paper's code used the mean eigenvalue instead.

    Acts on the shared features' gradients (``level = "features"``, trainables/balancing/gramian.py),
    as the paper's cheaper variant, Aligned-MTL-UB, does with the encoder's output. Weights times T
    (``mean_scale``): orthogonal gradients of equal norm give ``equal``'s sum.

    Hyperparameters: none.
    """

    def __init__(self, num_tasks: int) -> None:
        from torchjd.aggregation import AlignedMTLWeighting

        super().__init__(num_tasks)
        self.aligned = AlignedMTLWeighting(scale_mode="min")

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        return self.aligned(gram_matrix)
