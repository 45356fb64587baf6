"""Every search space, sampled standalone with Optuna: each sample is a complete, valid TrialConfig."""

from __future__ import annotations

import functools
import pickle

import optuna
import pytest

from search_spaces import registry
from trainables.config import ConfigError, TrialConfig

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


TOY_SPACE = '''
import optuna

DESCRIPTION = "toy: the shared model's learning rate"
FIXED = {"arch": "shared", "balancer.name": "equal"}
DEFAULT_OBJECTIVE = "single"


def define(trial: optuna.Trial) -> dict:
    trial.suggest_float("optim.lr", 1e-3, 1e-2, log=True)
    return dict(FIXED)
'''


def test_a_file_in_the_package_is_a_space(tmp_path, monkeypatch):
    """search_spaces/NAME.py is ``--space NAME`` with nothing to add elsewhere: the registry lists the package's
    modules. The toy file sits in a folder added to the package's path, so the real package stays as it is."""
    import importlib
    import sys

    import search_spaces

    assert {"gradnorm", "dual", "compare", "static", "branch"} <= set(registry.SPACES)
    assert "registry" not in registry.SPACES
    (tmp_path / "toyspace.py").write_text(TOY_SPACE)
    (tmp_path / "_toyhelper.py").write_text("")  # a helper module, not a space
    monkeypatch.setattr(search_spaces, "__path__", [*search_spaces.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    found = registry.discover()
    assert "toyspace" in found and "_toyhelper" not in found
    monkeypatch.setattr(registry, "SPACES", found)
    try:
        configs = sample("toyspace", 3)
        assert {(c.arch, c.balancer.name) for c in configs} == {("shared", "equal")}
        assert len({c.optim.lr for c in configs}) == 3  # searched, within the toy's range
        assert all(1e-3 <= c.optim.lr <= 1e-2 for c in configs)
    finally:
        sys.modules.pop("search_spaces.toyspace", None)


def test_gradnorm_space_searches_alpha_and_both_learning_rates():
    configs = sample("gradnorm", 10)
    assert {c.balancer.name for c in configs} == {"gradnorm"}
    alphas = [c.balancer.alpha for c in configs]
    assert min(alphas) >= 0 and max(alphas) <= 3 and len(set(alphas)) == 10
    assert len({c.balancer.weight_lr for c in configs}) == 10 and len({c.optim.lr for c in configs}) == 10


def test_compare_space_gives_every_method_the_same_budget():
    """Through the study's per-method searcher: round-robin, each method from its own study."""
    from study.tuning.searchers import PerMethodSearch

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


def test_compare_searches_what_each_balancer_declares():
    """Each method's sub-space: the learning rates and its balancer's hyperparameters with a search range."""
    from trainables.balancing.registry import hparams_of

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for method in registry.methods("compare"):
        trial = study.ask()
        registry.define_with_base(trial, space="compare", base=BASE, method=method)
        own = {h.key for h in hparams_of(method["balancer.name"]) if h.search is not None}
        assert {k for k in trial.params if k.startswith("balancer.")} == own
        for h in hparams_of(method["balancer.name"]):
            if h.search is not None:
                low, high, _ = h.search
                assert low <= trial.params[h.key] <= high
        study.tell(trial, 0.0)
    # today's ranges, from the balancers' declarations; a new balancer file adds its own (a superset, so
    # that adding one touches no other file)
    searched = {f"{m['balancer.name']}.{h.name}": h.search for m in registry.methods("compare")
                for h in hparams_of(m["balancer.name"]) if h.search is not None}
    assert searched.items() >= {
        "static.w_cls": (0.02, 20.0, True), "gradnorm.alpha": (0.0, 3.0, False),
        "gradnorm.weight_lr": (3e-4, 1e-1, True), "uncertainty.weight_lr": (1e-3, 1e-1, True),
        "dwa.temperature": (0.5, 5.0, False), "cagrad.cagrad_c": (0.1, 0.9, False),
    }.items()


def test_a_base_balancer_key_applies_to_the_methods_whose_balancer_has_it():
    base = registry.base_config("compare", {"train.epochs": 2, "balancer.warmup_steps": "1"})
    study = optuna.create_study()
    gradnorm, dwa = ({"arch": "shared", "balancer.name": n} for n in ("gradnorm", "dwa"))
    trial = study.ask()
    cfg = TrialConfig.from_flat({**registry.define_with_base(trial, "compare", base, gradnorm), **trial.params})
    assert cfg.balancer.warmup_steps == 1
    trial = study.ask()
    cfg = TrialConfig.from_flat({**registry.define_with_base(trial, "compare", base, dwa), **trial.params})
    assert cfg.balancer.name == "dwa" and cfg.balancer.dwa_window == 20  # not gradnorm's key; its own default
    # a single-balancer space: the base is that balancer's config
    assert registry.base_config("gradnorm", {"balancer.alpha": "2"})["balancer.alpha"] == 2.0


@pytest.mark.parametrize(("space", "config", "message"), [
    ("compare", {"balancer.nope": 1}, r"unknown keys \['balancer.nope'\]: no balancer of space 'compare' has it"),
    ("gradnorm", {"balancer.temperature": 1}, r"unknown keys \['balancer.temperature'\] for balancer.name='gradnorm'"),
    ("dual", {"balancer.name": "gradnorm"}, "space 'dual' sets the balancer itself"),
    ("compare", {"balancer.alpha": 20}, r"balancer.alpha=20.0 must be a finite number in \[0, 10\]"),
])
def test_a_bad_base_balancer_key_is_one_line(space, config, message):
    from trainables.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        registry.base_config(space, config)


def test_branch_space_searches_every_split_with_gradnorm_where_something_is_shared():
    configs = sample("branch", 30)
    splits = {c.model.shared_stages for c in configs}
    assert splits <= set(range(5)) and len(splits) >= 3  # the view head's P4: units 0..4
    assert {c.balancer.name for c in configs} == {"gradnorm"} and {c.model.cls_level for c in configs} == {"p4"}
    default_alpha = TrialConfig.from_partial({"balancer.name": "gradnorm"}).balancer.alpha
    for c in configs:  # at 0 nothing is shared: GradNorm has nothing to act on, so its alpha is not searched
        assert (c.balancer.alpha == default_alpha) == (c.model.shared_stages == 0)
    assert len({c.optim.lr for c in configs}) == 30 and len({c.optim.cls_lr for c in configs}) == 30


def test_a_split_method_label_round_trips_and_is_selected():
    assert registry.method_name("shared", "gradnorm") == "shared/gradnorm"
    assert registry.method_name("shared", "gradnorm", 2) == "shared@2/gradnorm"
    assert registry.method_name("dual", "equal", 2) == "dual"
    method = registry.parse_method("shared@2/gradnorm")
    assert method == {"arch": "shared", "balancer.name": "gradnorm", "model.shared_stages": 2}
    assert registry.method_label(method) == "shared@2/gradnorm"
    assert registry.method_label({"arch": "shared", "balancer.name": "equal", "model.shared_stages": float("nan")}
                                 ) == "shared/equal"  # a row of an older study: no split column
    chosen = registry.select_methods("compare", ["shared@0/gradnorm", "dual", "shared/gradnorm"])
    # one model, one label: at K = 0 no balancer acts (each loss at weight 1), so the label says equal
    assert [registry.method_label(m) for m in chosen] == ["shared@0/equal", "dual", "shared/gradnorm"]
    # K = 4 shares every unit up to the view head's level (P4): the shared model itself, named and run once
    assert registry.method_label(registry.parse_method("shared@4/gradnorm")) == "shared/gradnorm"
    assert registry.method_label({**registry.parse_method("shared@4/gradnorm"), "model.cls_level": "p5"}
                                 ) == "shared@4/gradnorm"  # at P5 the view head's level is 6 units deep
    both = registry.select_methods("compare", ["shared/gradnorm", "shared@4/gradnorm", "shared@0/equal"])
    assert [registry.method_label(m) for m in both] == ["shared/gradnorm", "shared@0/equal"]
    trial = optuna.create_study().ask()
    flat = registry.define_with_base(trial, "gradnorm", TrialConfig.from_partial({"balancer.name": "gradnorm"}
                                                                                 ).to_flat(), chosen[0])
    assert TrialConfig.from_flat({**trial.params, **flat}).model.shared_stages == 0  # a one-method space too
    for labels, message in ((["shared@5/gradnorm"], r"must be in \[0, 4\]"), (["dual@1"], "shared@K/<balancer>"),
                            (["shared@2/nope"], "not a method of space"),
                            (["shared@1/gradnorm"], "sets model.shared_stages itself")):
        space = "branch" if "itself" in message else "compare"
        with pytest.raises(ConfigError, match=message):
            registry.select_methods(space, labels)
