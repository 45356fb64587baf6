"""The balancer contract: how T task losses become one backward pass through a shared network.

The engine splits every forward pass at the shared features (see ``SharedGraph``): the task heads
run on *detached* copies of the shared features, so a strategy can read each task's gradient with
respect to the shared representation after one backward pass through the heads, and then send
one combined gradient through the trunk. This is what lets GradNorm, PCGrad and CAGrad cost about
one forward and one backward pass instead of T backward passes: with W the last shared layer,
∇_W(w_i L_i) = w_i ∇_W L_i, so GradNorm's G_i = w_i ‖∇_W L_i‖ needs only each head's gradient at
the shared features pushed through W, never a second backward through the trunk.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


@dataclass
class SharedGraph:
    """The shared part of one forward pass.

    features: the trunk's outputs, still attached to the trunk's graph, e.g. (P3, P4, P5) with
        shapes (B, C_l, H_l, W_l). Empty for a model that shares nothing (dual, single-task heads
        on raw images).
    detached: the same tensors detached and requiring grad; the heads were run on these.
    params: the last shared layer's parameters W (what GradNorm norms); empty if none.
    """

    features: tuple[Tensor, ...]
    detached: tuple[Tensor, ...]
    params: list[torch.nn.Parameter]
    # The (T) task losses as separate scalars, when the caller has them (the engine does): a backward
    # from one of them runs only that task's head, while a backward from an element of the stacked
    # (T,) tensor runs every head (the stack's backward is dense). See ``task_term``.
    terms: tuple[Tensor, ...] = ()

    @classmethod
    def split(cls, features: tuple[Tensor, ...], params: list[torch.nn.Parameter]) -> SharedGraph:
        detached = tuple(f.detach().requires_grad_(f.requires_grad) for f in features)
        return cls(features=features, detached=detached, params=params)

    def task_term(self, losses: Tensor, i: int) -> Tensor:
        """Task i's loss, from ``terms`` when given (cheaper to backward), else ``losses[i]``."""
        return self.terms[i] if self.terms else losses[i]

    @property
    def active(self) -> bool:
        """Whether any gradient has to flow back into a trunk."""
        return any(d.requires_grad for d in self.detached)

    def head_backward(self, loss: Tensor, retain_graph: bool = True) -> tuple[Tensor, ...]:
        """Backward ``loss`` through the heads only; accumulate head-parameter grads as usual.

        Returns d loss / d features, one tensor per feature (zeros where a feature is unused).
        """
        for d in self.detached:
            d.grad = None
        if loss.requires_grad:
            loss.backward(retain_graph=retain_graph)
        grads = tuple(
            d.grad if d.grad is not None else torch.zeros_like(d) for d in self.detached if d.requires_grad
        )
        for d in self.detached:
            d.grad = None
        return grads

    def trunk_backward(self, feature_grads: tuple[Tensor, ...]) -> None:
        """Send the combined feature gradient through the trunk (one backward pass)."""
        feats = self.attached_inputs()
        if feats:
            torch.autograd.backward(list(feats), list(feature_grads))

    def attached_inputs(self) -> tuple[Tensor, ...]:
        return tuple(f for f, d in zip(self.features, self.detached, strict=True) if d.requires_grad)

    def param_grad_norm(self, feature_grads: tuple[Tensor, ...]) -> Tensor:
        """‖∇_W‖ for one task, from that task's feature gradients, through the last shared layer only.

        Returns a scalar tensor (0 when there is no W).
        """
        if not self.params:
            return torch.zeros(())
        # a level this task does not read (the view head's P3 / P5) has an all-zero gradient: skipping it
        # saves a backward through the layers between W and that level (stage 5 + SPPF for P5), which
        # would only add zeros
        pairs = [(f, g) for f, g in zip(self.attached_inputs(), feature_grads, strict=True) if bool(g.any())]
        if not pairs:
            return torch.zeros(())
        feats, grads_in = zip(*pairs, strict=True)
        grads = torch.autograd.grad(
            list(feats), self.params, list(grads_in), retain_graph=True, allow_unused=True
        )
        flat = [g.reshape(-1) for g in grads if g is not None]
        return torch.linalg.vector_norm(torch.cat(flat)) if flat else torch.zeros(())


@dataclass(frozen=True)
class Hparam:
    """One hyperparameter of a balancer, declared next to it (``Balancer.hparams``).

    Its config key is ``balancer.<name>`` (``--set balancer.alpha=2``, a Parquet column of every trial
    of that balancer); the constructor takes it as the keyword ``name``.

    name: the constructor's keyword.
    default: the value a config takes when none is given.
    doc: one line for people.
    type: ``float`` or ``int`` (a config value is coerced to it).
    low, high: the valid range, inclusive; ``low_open`` makes it ``> low``. A float must be finite.
    search: ``(low, high, log)``, the range the ``compare`` space searches, or None: not searched there.
    warmup: the number of steps before the strategy does its full work (GradNorm's L(0) steps, DWA's
        window); the benchmarks set it to ``low`` so that every step they time is a full one.
    """

    name: str
    default: float
    doc: str
    type: type = float
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    search: tuple[float, float, bool] | None = None
    warmup: bool = False

    @property
    def key(self) -> str:
        return f"balancer.{self.name}"

    def problem(self, value: float) -> str | None:
        """Why ``value`` is not valid (one line), or None."""
        above = value > self.low if self.low_open else value >= self.low
        finite = self.type is not float or math.isfinite(value)
        if finite and above and value <= self.high:
            return None
        low = f"{self.low:g}" if math.isfinite(self.low) else ""
        high = f"{self.high:g}" if math.isfinite(self.high) else ""
        if low and high:
            text = f"in {'(' if self.low_open else '['}{low}, {high}]"
        elif low:
            text = f"{'>' if self.low_open else '>='} {low}"
        else:
            text = f"<= {high}" if high else "a number"
        return f"{self.key}={value} must be {'a finite number ' if self.type is float else ''}{text}"


class Balancer(ABC):
    """One loss-balancing strategy.

    Subclasses take ``num_tasks`` plus their own hyperparameters as keyword-only arguments without
    defaults, and keep all their state themselves. ``hparams`` declares those hyperparameters
    (``Hparam``): their defaults — the only home of each default: ``registry.build`` passes every one —,
    valid ranges and search ranges; the config validates them, and the ``compare`` space searches those
    with a ``search`` range.
    """

    hparams: ClassVar[tuple[Hparam, ...]] = ()
    name: ClassVar[str] = ""  # set by ``@register``
    # the registered balancer this one computes exactly at its default hyperparameters, if any: its default
    # configuration's re-runs are that one's (study/heldout/tuning_gain.py pairs a searched method with them)
    same_at_defaults: ClassVar[str | None] = None

    def __init__(self, num_tasks: int) -> None:
        self.num_tasks = num_tasks

    @abstractmethod
    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        """Run the backward pass for the model; leave ``.grad`` set on every model parameter.

        losses: (T,) the task losses of this step, attached to the graph.
        Returns the (T,) weights used, detached.
        """

    def after_step(self, losses: Tensor) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Called after the optimizer step with the (T,) detached losses of the step."""

    def state_dict(self) -> dict:
        """Everything needed to resume exactly (tensors and plain values only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - stateless by default
        """Restore what :meth:`state_dict` returned."""


def weighted_backward(losses: Tensor, weights: Tensor, shared: SharedGraph) -> None:
    """Backward of Σ w_i L_i with the weights as constants: heads once, trunk once."""
    total = (weights.detach().to(losses.dtype) * losses).sum()
    if shared.active:
        grads = shared.head_backward(total, retain_graph=False)
        shared.trunk_backward(grads)
    elif total.requires_grad:
        total.backward()
