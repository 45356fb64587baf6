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
    flat = TrialConfig().to_flat()
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
        "optim.lr": lr, "balancer.alpha": alpha, "data.batch": batch, "data.imgsz": imgsz,
        "model.cls_hidden": hidden, "data.augment": augment, "balancer.name": balancer,
    })
    assert TrialConfig.from_flat(cfg.to_flat()) == cfg
