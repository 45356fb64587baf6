"""Nash-MTL: the update as the Nash bargaining solution between the tasks."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from trainables.balancing.base import Hparam
from trainables.balancing.gramian import GramianBalancer
from trainables.balancing.registry import register

OPTIM_NITER = 20  # the paper's (and TorchJD's default) number of sequential convex solves per update


@register("nash_mtl")
class NashMTL(GramianBalancer):
    """Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, ICML 2022, arXiv:2202.01017),
    by TorchJD's ``NashMTL`` weighting.

    The update d = Σ_i α_i g_i is the Nash bargaining solution: Σ_i log(g_i·d) is maximal within a ball,
    which holds when α_i (G α)_i = 1 for every task i (G the Gramian), each task getting the same
    "utility" share. TorchJD solves it as the paper's code does: a sequence of at most 20 convex problems
    (cvxpy + ECOS, G normalised by its Frobenius norm), each linearised at the previous step's α; where a
    solve fails (the reference code's known weak spot, e.g. at a point where some (G α)_i = 0) the
    previous α is kept, ones at the first step. TorchJD's weighting reads the (T, n) matrix of task
    gradients only through G (and ‖α^T J‖, for a clip that is off here), so it is handed a T×T factor F
    with F F^T = G (from G's eigendecomposition), which gives it exactly.

    Scale: the solution has ‖d‖² = α^T G α = T whatever the gradients' size, and the paper then clips the
    shared parameters' gradient norm at 1 — a scale that means nothing for feature gradients, whose
    norms here are far from 1. So the direction is Nash-MTL's and the size the study's: α is rescaled
    to Σ α_i = T (orthogonal gradients of equal norm: exactly ``equal``'s sum), TorchJD's ``max_norm``
    clip is off, and the engine's per-network clip (``optim.grad_clip``), the same for every method,
    does the clipping. Acts on the shared features' gradients (``level = "features"``,
    trainables/balancing/gramian.py). Every ``nash_every`` steps the weights are solved again, between
    them reused (the paper's cost saver; 1 = every step).

    State: the step counter and the last α (TorchJD's warm start), in :meth:`state_dict`. Needs cvxpy
    and ECOS: ``pip install -e ".[nash]"`` (torchjd's ``nash_mtl`` extra).

    Hyperparameters: ``nash_every``.
    """

    mean_scale = False  # rescaled to Σ α = T in weighting()
    hparams = (
        Hparam("nash_every", 1, "steps between two solves of the weights (1: every step)", type=int, low=1),
    )

    def __init__(self, num_tasks: int, *, nash_every: int) -> None:
        from torchjd.aggregation import NashMTL as TorchJDNashMTL

        super().__init__(num_tasks)
        try:
            aggregator = TorchJDNashMTL(num_tasks, max_norm=0.0, update_weights_every=nash_every,
                                        optim_niter=OPTIM_NITER)
        except ImportError as err:
            raise ImportError(f"balancer nash_mtl: {err} (with this project: pip install -e \".[nash]\")") from None
        self.nash = aggregator.weighting  # the Weighting of the (T, n) matrix

    def weighting(self, gram_matrix: Tensor) -> Tensor:
        eigenvalues, vectors = torch.linalg.eigh(gram_matrix)  # G = V Λ V^T
        factor = vectors * eigenvalues.clamp_min(0).sqrt()  # (T, T): F F^T = G (rounding's negatives: 0)
        with warnings.catch_warnings():
            # cvxpy warns on every solve that the problem is not DPP (so it is recompiled each time), and
            # ECOS that a solution "may be inaccurate" when it stops at its iteration limit: true of
            # TorchJD's and the paper's code alike, a line per step, and nothing a run can act on
            warnings.filterwarnings("ignore", message=".*not DPP.*")
            warnings.filterwarnings("ignore", message="Solution may be inaccurate.*")
            alpha = self.nash(factor)  # (T,) α_i (G α)_i = 1
        return alpha / alpha.sum().clamp_min(1e-12) * self.num_tasks

    def state_dict(self) -> dict:
        return {"step": float(self.nash.step), "alpha": torch.from_numpy(np.asarray(self.nash.prvs_alpha, np.float64))}

    def load_state_dict(self, state: dict) -> None:
        # TorchJD builds its cvxpy problem on its first call (step 0) and keeps only the step counter and the
        # last solution between calls; a restored weighting past step 0 needs its problem built here
        self.nash.reset()
        self.nash.step = float(state["step"])
        self.nash.prvs_alpha = state["alpha"].double().numpy().copy()
        if self.nash.step > 0:
            self.nash._init_optim_problem()
