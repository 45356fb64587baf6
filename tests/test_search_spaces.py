"""Every search space, sampled standalone with Optuna: each sample is a complete, valid TrialConfig."""

from __future__ import annotations

import functools
import pickle

import optuna
import pytest

from search_spaces import registry
from trainables.config import TrialConfig

BASE = TrialConfig.from_partial({"train.epochs": 2}).to_flat()


def sample(space: str, n: int, seed: int = 0) -> list[TrialConfig]:
    """``n`` samples of ``space``, its methods taking turns (a multi-method space's define needs the method)."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True))
    methods = registry.methods(space)
    configs = []
    for i in range(n):
        trial = study.ask()
        constants = registry.define_with_base(trial, space=space, base=BASE, method=methods[i % len(methods)])
        flat = {**trial.params, **constants}
        configs.append(TrialConfig.from_flat(flat))  # strict: no key missing, none unknown
        study.tell(trial, 0.0)
    return configs


@pytest.mark.parametrize("space", registry.SPACES)
def test_space_samples_are_complete_valid_configs(space):
    configs = sample(space, 12)
    module = registry.load(space)
    for cfg in configs:
        flat = cfg.to_flat()
        assert all(flat[k] == v for k, v in module.FIXED.items())
        assert cfg.train.epochs == 2  # the study's base survives
    assert registry.objectives(space, None)
    assert module.DESCRIPTION


@pytest.mark.parametrize("space", registry.SPACES)
def test_define_is_picklable_for_searcher_checkpoints(space):
    define = functools.partial(registry.define_with_base, space=space, base=BASE)
    assert pickle.loads(pickle.dumps(define)).keywords["space"] == space


def test_gradnorm_space_searches_alpha_and_both_learning_rates():
    configs = sample("gradnorm", 10)
    assert {c.balancer.name for c in configs} == {"gradnorm"}
    alphas = [c.balancer.alpha for c in configs]
    assert min(alphas) >= 0 and max(alphas) <= 3 and len(set(alphas)) == 10
    assert len({c.balancer.weight_lr for c in configs}) == 10 and len({c.optim.lr for c in configs}) == 10


def test_compare_space_gives_every_method_the_same_budget():
    """Through the study's per-method searcher: round-robin, each method from its own study."""
    from study.searchers import PerMethodSearch

    methods = registry.methods("compare")
    searcher = PerMethodSearch("compare", BASE, [("val.objective", "max")], samples=3 * len(methods))
    configs = [TrialConfig.from_flat(searcher.suggest(f"t{i}")) for i in range(3 * len(methods))]
    counts: dict[tuple[str, str], int] = {}
    for c in configs:
        counts[(c.arch, c.balancer.name)] = counts.get((c.arch, c.balancer.name), 0) + 1
    assert counts == {(m["arch"], m["balancer.name"]): 3 for m in methods}
    assert [len(s.trials) for s in searcher.studies] == [3] * len(methods)  # one Optuna study per method


def test_compare_define_takes_the_method_not_the_trial_number():
    study = optuna.create_study()
    method = {"arch": "shared", "balancer.name": "gradnorm"}
    for _ in range(3):  # any trial number: the method is the one given
        constants = registry.define_with_base(study.ask(), space="compare", base=BASE, method=method)
        assert (constants["arch"], constants["balancer.name"]) == ("shared", "gradnorm")
    with pytest.raises(ValueError, match="needs the trial's method"):
        registry.define_with_base(study.ask(), space="compare", base=BASE)


@pytest.mark.parametrize("space", registry.SPACES)
def test_every_space_names_its_methods(space):
    methods = registry.methods(space)
    assert methods and all(set(m) == {"arch", "balancer.name"} for m in methods)
    names = [registry.method_name(m["arch"], m["balancer.name"]) for m in methods]
    assert len(set(names)) == len(names)  # one Optuna study per method needs distinct names


def test_multi_objective_spaces_and_single_default():
    assert registry.objectives("gradnorm", None) == [("val.objective", "max")]
    assert len(registry.objectives("gradnorm", "multi")) == 2
    assert registry.objectives("static", None) == [("val.map", "max"), ("val.view_accuracy", "max")]
