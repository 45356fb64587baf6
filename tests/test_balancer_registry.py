"""A balancer is one file: its class, ``@register``, and its hyperparameters declared next to it.

The toy below is added the way a newcomer adds a strategy (in trainables/balancing/toy.py it would be
found by the registry on its own): the config, the Parquet columns, the compare space and the
registry's build all take it from that declaration, with nothing added anywhere else.
"""

from __future__ import annotations

import inspect
import math

import optuna
import pytest
import torch

from search_spaces import registry as spaces
from tests.balancing_toys import ToyModel, mse_losses, toy_batch
from trainables.balancing import registry
from trainables.balancing.base import Balancer, Hparam, SharedGraph, weighted_backward
from trainables.balancing.registry import available, build, register
from trainables.config import ConfigError, TrialConfig


@pytest.fixture
def toy(monkeypatch):
    """Register a toy strategy for one test; the registry is as before afterwards."""
    available()  # load the package's strategies first, so the copy below holds them all
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register("toy")
    class Toy(Balancer):
        """Detection at weight 1, every other task at ``toy_w``."""

        hparams = (Hparam("toy_w", 0.5, "weight of the other tasks", low=0.0, high=4.0, search=(0.1, 2.0, True)),)

        def __init__(self, num_tasks: int, *, toy_w: float) -> None:
            super().__init__(num_tasks)
            self.weights = torch.tensor([1.0] + [toy_w] * (num_tasks - 1))

        def backward(self, losses, shared: SharedGraph):
            weighted_backward(losses, self.weights, shared)
            return self.weights

    return Toy


def test_the_config_takes_the_toys_key_and_refuses_anothers(toy):
    cfg = TrialConfig.from_partial({"balancer.name": "toy", "balancer.toy_w": "1.5"})
    assert cfg.balancer.toy_w == 1.5
    assert TrialConfig.from_partial({"balancer.name": "toy"}).balancer.toy_w == 0.5  # its default
    with pytest.raises(ConfigError, match=r"unknown keys \['balancer.alpha'\] for balancer.name='toy' .*"
                                          r"its keys: \['balancer.toy_w'\]"):
        TrialConfig.from_partial({"balancer.name": "toy", "balancer.alpha": 1.0})
    with pytest.raises(ConfigError, match=r"unknown keys \['balancer.toy_w'\] for balancer.name='gradnorm' "
                                          r"\(balancer.toy_w is toy's\)"):
        TrialConfig.from_partial({"balancer.name": "gradnorm", "balancer.toy_w": 1.0})


def test_the_toys_bounds_are_validated(toy):
    with pytest.raises(ConfigError, match=r"balancer.toy_w=5.0 must be a finite number in \[0, 4\]"):
        TrialConfig.from_partial({"balancer.name": "toy", "balancer.toy_w": 5.0})


def test_the_toys_key_is_a_column_and_reads_back(toy):
    cfg = TrialConfig.from_partial({"balancer.name": "toy", "balancer.toy_w": 2.0})
    flat = cfg.to_flat()
    assert flat["balancer.toy_w"] == 2.0 and "balancer.toy_w" in TrialConfig.flat_keys()
    assert TrialConfig.from_flat(flat) == cfg
    # a stored gradnorm row of the same (mixed) study carries the toy's column as NaN: ignored
    gradnorm = TrialConfig.from_partial({"balancer.name": "gradnorm"})
    assert TrialConfig.from_flat({**gradnorm.to_flat(), "balancer.toy_w": math.nan}) == gradnorm


def test_the_compare_space_searches_the_toy(toy):
    method = {"arch": "shared", "balancer.name": "toy"}
    assert method in spaces.methods("compare")
    base = TrialConfig.from_partial({"train.epochs": 2}).to_flat()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        constants = spaces.define_with_base(trial, space="compare", base=base, method=method)
        assert 0.1 <= trial.params["balancer.toy_w"] <= 2.0
        assert TrialConfig.from_flat({**constants, **trial.params}).balancer.name == "toy"
        study.tell(trial, 0.0)


def test_build_gives_the_toy_its_value(toy):
    balancer = build("toy", 2, toy_w=0.25)
    assert isinstance(balancer, toy) and balancer.weights.tolist() == [1.0, 0.25]
    assert build("toy", 3).weights.tolist() == [1.0, 0.5, 0.5]
    with pytest.raises(TypeError, match="no hyperparameters"):
        build("toy", 2, alpha=1.0)  # exactly the declared keys


def test_the_toy_is_gone_after_its_test():
    assert "toy" not in available()


def test_a_declaration_mistake_fails_at_registration(monkeypatch):
    available()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(TypeError, match="its own default fails its range"):

        @register("broken")
        class Broken(Balancer):
            hparams = (Hparam("k", 5.0, "a weight", low=0.0, high=1.0),)

            def backward(self, losses, shared):
                raise NotImplementedError


@pytest.mark.parametrize("name", available())
def test_every_balancers_defaults_validate_and_build(name):
    cfg = TrialConfig.from_partial({"balancer.name": name})
    declared = registry.hparams_of(name)
    assert cfg.balancer.hparams == {h.name: h.default for h in declared}
    assert all(isinstance(cfg.balancer.hparams[h.name], h.type) for h in declared)
    balancer = build(name, 2, **cfg.balancer.hparams)
    # the constructor takes each declared hyperparameter as a keyword without a default of its own:
    # the Hparam is the one home of each default (build passes every value)
    params = inspect.signature(type(balancer).__init__).parameters
    for h in declared:
        assert h.name in params, f"{name}: the constructor does not take {h.name}"
        assert params[h.name].kind is inspect.Parameter.KEYWORD_ONLY, f"{name}.{h.name}: keyword-only"
        assert params[h.name].default is inspect.Parameter.empty, f"{name}.{h.name}: a second copy of its default"
    for h in declared:  # a searched range lies inside the valid one
        if h.search is not None:
            low, high, _ = h.search
            assert h.problem(h.type(low)) is None and h.problem(h.type(high)) is None, h.key
    # one step on a toy model: the defaults train
    model = ToyModel(2)
    x, targets = toy_batch(2, 0)
    features = model.trunk(x)
    shared = SharedGraph.split(features, list(model.shared_parameters()))
    weights = balancer.backward(mse_losses(model.heads(shared.detached), targets), shared)
    assert weights.shape == (2,) and torch.isfinite(weights).all()


def test_a_balancer_by_import_path_is_a_plugin():
    cfg = TrialConfig.from_partial({"balancer.name": "tests.faults:NaNWeights", "balancer.alpha": 0.5})
    assert cfg.balancer.alpha == 0.5  # a GradNorm subclass: GradNorm's hyperparameters
    assert "tests.faults:NaNWeights" not in available()  # plugins are not registered (nor in compare)
    from tests.faults import NaNWeights

    assert type(build(cfg.balancer.name, 2, **cfg.balancer.hparams)) is NaNWeights
