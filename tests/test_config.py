"""TrialConfig: the flat dict round-trip, strictness, coercion and range checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainables.config import ConfigError, TrialConfig, model_multiples


def test_flat_round_trip_of_defaults():
    cfg = TrialConfig()
    assert TrialConfig.from_flat(cfg.to_flat()) == cfg


def test_flat_keys_are_namespaced_and_stable():
    keys = TrialConfig.flat_keys()
    assert keys[0] == "arch"
    assert "balancer.alpha" in keys and "model.width_multiple" in keys and "data.imgsz" in keys
    assert len(keys) == len(set(keys))


def test_missing_key_is_an_error_not_a_default():
    flat = TrialConfig.from_partial({"balancer.name": "gradnorm"}).to_flat()
    del flat["balancer.alpha"]
    with pytest.raises(ConfigError, match=r"missing keys \['balancer.alpha'\]"):
        TrialConfig.from_flat(flat)


def test_unknown_key_is_an_error():
    flat = TrialConfig().to_flat()
    flat["balancer.alhpa"] = 1.0
    with pytest.raises(ConfigError, match="unknown keys"):
        TrialConfig.from_flat(flat)
    with pytest.raises(ConfigError, match="unknown keys"):
        TrialConfig.from_partial({"balancer.alhpa": 1.0})


def test_strings_from_the_command_line_are_typed():
    cfg = TrialConfig.from_partial({"optim.lr": "0.02", "data.augment": "false", "data.batch": "8",
                                    "balancer.name": "equal"})
    assert cfg.optim.lr == 0.02 and cfg.data.augment is False and cfg.data.batch == 8


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"arch": "triple"}, "arch='triple' is not one of"),
        ({"data.imgsz": 100}, "must be a multiple of 32"),
        ({"data.batch": 2.5}, "not a valid int"),
        ({"optim.lr": -1.0}, "must be a positive number"),
        ({"optim.lr": math.nan}, "must be a positive number"),
        ({"balancer.name": "magic"}, "balancer.name='magic' is not one of"),
        ({"arch": "dual", "balancer.name": "gradnorm"}, "has no shared weights to balance"),
        ({"model.cls_dropout": 1.0}, r"must be in \[0, 1\)"),
        ({"data.augment": "maybe"}, "not a valid bool"),
    ],
)
def test_bad_values_give_one_line(flat, message):
    with pytest.raises(ConfigError, match=message) as err:
        TrialConfig.from_partial(flat)
    assert "\n" not in str(err.value)


def test_replace_and_presets():
    cfg = TrialConfig().replace(**{"train.epochs": 3, "model.size": "s"})
    assert cfg.train.epochs == 3
    assert model_multiples(cfg.model) == (0.33, 0.50)
    custom = cfg.replace(**{"model.size": "custom", "model.width_multiple": 0.125})
    assert model_multiples(custom.model) == (0.33, 0.125)


@settings(max_examples=60, deadline=None)
@given(
    lr=st.floats(1e-6, 1.0),
    alpha=st.floats(0.0, 10.0),
    batch=st.integers(1, 256),
    imgsz=st.integers(1, 40).map(lambda k: 32 * k),
    hidden=st.integers(0, 1024),
    augment=st.booleans(),
    balancer=st.sampled_from(["equal", "gradnorm", "static"]),
)
def test_round_trip_property(lr, alpha, batch, imgsz, hidden, augment, balancer):
    cfg = TrialConfig.from_partial({
        "optim.lr": lr, "data.batch": batch, "data.imgsz": imgsz,
        "model.cls_hidden": hidden, "data.augment": augment, "balancer.name": balancer,
        **({"balancer.alpha": alpha} if balancer == "gradnorm" else {}),
    })
    assert TrialConfig.from_flat(cfg.to_flat()) == cfg


def test_balancer_section_holds_the_named_balancers_keys_only():
    assert [k for k in TrialConfig().to_flat() if k.startswith("balancer.")] == ["balancer.name"]
    gradnorm = TrialConfig.from_partial({"balancer.name": "gradnorm", "balancer.alpha": "2"})
    assert [k for k in gradnorm.to_flat() if k.startswith("balancer.")] == \
        ["balancer.name", "balancer.alpha", "balancer.weight_lr", "balancer.warmup_steps"]
    assert gradnorm.balancer.alpha == 2.0 and gradnorm.balancer.warmup_steps == 20  # typed; missing: default
    with pytest.raises(AttributeError):
        _ = gradnorm.balancer.cagrad_c
    # a new balancer.name starts from that balancer's defaults
    assert gradnorm.replace(**{"balancer.name": "dwa"}).balancer.hparams == {"temperature": 2.0, "dwa_window": 20}


def test_another_balancers_key_is_refused_with_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown keys \['balancer.alpha'\] for balancer.name='dwa' "
                                          r"\(balancer.alpha is gradnorm's\); its keys: \['balancer.temperature', "
                                          r"'balancer.dwa_window'\]"):
        TrialConfig.from_partial({"balancer.name": "dwa", "balancer.alpha": 1.0})
    with pytest.raises(ConfigError, match="its keys: none"):
        TrialConfig.from_partial({"balancer.weight_lr": 0.1})  # equal has no hyperparameters


def test_stored_configs_may_carry_other_balancers_keys():
    cfg = TrialConfig.from_partial({"balancer.name": "uncertainty", "balancer.weight_lr": 0.01})
    # an older checkpoint (every balancer's key) or a mixed trials.parquet row (NaN in other methods' columns)
    stored = {**cfg.to_flat(), "balancer.alpha": math.nan, "balancer.cagrad_c": 0.4, "train.fail": "none"}
    assert TrialConfig.from_flat(stored) == cfg
    flat = cfg.to_flat()
    del flat["balancer.weight_lr"]  # the named balancer's own key is still required
    with pytest.raises(ConfigError, match=r"missing keys \['balancer.weight_lr'\]"):
        TrialConfig.from_flat(flat)
    with pytest.raises(ConfigError, match=r"train\.fail='nan' is no longer a setting"):
        TrialConfig.from_flat({**cfg.to_flat(), "train.fail": "nan"})


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"balancer.name": "gradnorm", "balancer.alpha": 10.5},
         r"balancer.alpha=10.5 must be a finite number in \[0, 10\]"),
        ({"balancer.name": "gradnorm", "balancer.weight_lr": 0}, r"balancer.weight_lr=0.0 must be a finite number > 0"),
        ({"balancer.name": "uncertainty", "balancer.weight_lr": math.inf}, "must be a finite number > 0"),
        ({"balancer.name": "gradnorm", "balancer.warmup_steps": 0}, r"balancer.warmup_steps=0 must be >= 1"),
        ({"balancer.name": "static", "balancer.w_cls": -1}, r"balancer.w_cls=-1.0 must be a finite number >= 0"),
        ({"balancer.name": "dwa", "balancer.temperature": 0}, "must be a finite number > 0"),
        ({"balancer.name": "dwa", "balancer.dwa_window": 0}, "must be >= 1"),
        ({"balancer.name": "cagrad", "balancer.cagrad_c": -0.1}, "must be a finite number >= 0"),
        ({"balancer.name": "no_such_module:Balancer"}, "cannot import 'no_such_module'"),
        ({"balancer.name": "math:pi"}, "is not a concrete Balancer subclass"),
    ],
)
def test_balancer_ranges_and_names_give_one_line(flat, message):
    with pytest.raises(ConfigError, match=message) as err:
        TrialConfig.from_partial(flat)
    assert "\n" not in str(err.value)
