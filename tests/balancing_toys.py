"""Toy multi-task models with a trunk/heads split, for the balancer tests (not a test module).

``ToyModel`` mirrors the engine's model API: ``trunk(x)`` returns a tuple of shared features,
``heads(features)`` the per-task outputs, ``shared_parameters()`` the last shared layer W. The
training step below is the engine's, written out, so every strategy is exercised the way it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from trainables.balancing.base import Balancer, Hparam, SharedGraph, weighted_backward


class ToyModel(nn.Module):
    """x (B, D_in) → h1 = relu(L1 x), h2 = relu(L2 h1) → task i: linear on h2 (task 1 also reads h1).

    Two shared features so the split graph carries a tuple; W = L2 feeds every head.
    """

    def __init__(self, num_tasks: int, d_in: int = 6, hidden: int = 8, d_out: int = 3) -> None:
        super().__init__()
        self.l1 = nn.Linear(d_in, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.task_heads = nn.ModuleList(nn.Linear(hidden, d_out) for _ in range(num_tasks))
        self.skip = nn.Linear(hidden, d_out)  # task 1's extra read of h1

    def trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = torch.relu(self.l1(x))  # (B, H)
        h2 = torch.relu(self.l2(h1))  # (B, H)
        return h1, h2

    def heads(self, features: tuple[Tensor, ...]) -> list[Tensor]:
        h1, h2 = features
        outs = [head(h2) for head in self.task_heads]  # T × (B, D_out)
        if len(outs) > 1:
            outs[1] = outs[1] + self.skip(h1)
        return outs

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.l2.parameters())

    def trunk_parameters(self) -> list[nn.Parameter]:
        return [*self.l1.parameters(), *self.l2.parameters()]


class SyntheticTrunk(ToyModel):
    """The GradNorm paper's regression toy (Sec. 4): a ReLU trunk, one linear head per task, W = last trunk layer."""

    def __init__(self, num_tasks: int, d_in: int, hidden: int, d_out: int, depth: int = 3) -> None:
        nn.Module.__init__(self)
        layers = [nn.Linear(d_in if k == 0 else hidden, hidden) for k in range(depth)]
        self.layers = nn.ModuleList(layers)
        self.task_heads = nn.ModuleList(nn.Linear(hidden, d_out) for _ in range(num_tasks))

    def trunk(self, x: Tensor) -> tuple[Tensor]:
        for layer in self.layers:
            x = torch.relu(layer(x))  # (B, H)
        return (x,)

    def heads(self, features: tuple[Tensor, ...]) -> list[Tensor]:
        return [head(features[0]) for head in self.task_heads]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.layers[-1].parameters())

    def trunk_parameters(self) -> list[nn.Parameter]:
        return list(self.layers.parameters())


def synthetic_maps(num_tasks: int, d_in: int, d_out: int, seed: int = 0) -> list[Tensor]:
    """T × (D_out, D_in) matrices B + ε_i: B ~ N(0, 10) shared, ε_i ~ N(0, 3.5) per task (paper, Sec. 4)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(d_out, d_in, generator=g) * 10**0.5
    return [base + torch.randn(d_out, d_in, generator=g) * 3.5**0.5 for _ in range(num_tasks)]


def synthetic_targets(maps: list[Tensor], sigmas: list[float], x: Tensor) -> list[Tensor]:
    """T × (B, D_out) targets σ_i tanh((B + ε_i) x)."""
    return [s * torch.tanh(x @ m.T) for m, s in zip(maps, sigmas, strict=True)]


def mse_losses(outputs: list[Tensor], targets: list[Tensor]) -> Tensor:
    """(T,) mean squared errors, one per task."""
    return torch.stack([torch.mean((o - t) ** 2) for o, t in zip(outputs, targets, strict=True)])


def train_step(
    model: ToyModel, balancer: Balancer, optimizer: torch.optim.Optimizer, x: Tensor, targets: list[Tensor]
) -> tuple[Tensor, Tensor]:
    """One engine step: split forward, balancer backward, optimizer step, after_step. Returns (weights, losses)."""
    optimizer.zero_grad(set_to_none=True)
    shared = SharedGraph.split(model.trunk(x), model.shared_parameters())
    losses = mse_losses(model.heads(shared.detached), targets)  # (T,)
    weights = balancer.backward(losses, shared)
    optimizer.step()
    balancer.after_step(losses.detach())
    return weights, losses.detach()


def toy_batch(num_tasks: int, step: int, batch: int = 16, d_in: int = 6, d_out: int = 3) -> tuple[Tensor, list[Tensor]]:
    """A deterministic batch whose task targets pull the shared features in different directions."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(batch, d_in, generator=g)
    targets = [(-1.0) ** i * (i + 1) * torch.tanh(x[:, :d_out] + i) for i in range(num_tasks)]
    return x, targets


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded: these models are tiny, and on a loaded machine two threads spin-wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ScaledOthers(Balancer):
    """A balancer plugin (``balancer.name=tests.balancing_toys:ScaledOthers``), not registered: detection
    at weight 1, every other task at ``others``; a hyperparameter no registered balancer has."""

    hparams = (Hparam("others", 0.5, "weight of every task after the first", low=0.0),)

    def __init__(self, num_tasks: int, *, others: float) -> None:
        super().__init__(num_tasks)
        self.weights = torch.tensor([1.0] + [others] * (num_tasks - 1))

    def backward(self, losses: Tensor, shared: SharedGraph) -> Tensor:
        weighted_backward(losses, self.weights.to(losses.device), shared)
        return self.weights
