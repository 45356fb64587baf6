"""Where to branch (``model.shared_stages``): one model family from fully shared to fully separate.

The two ends are today's models exactly (parameter counts, FLOPs, state_dict keys); every split trains
every parameter, balances on the last shared layer, and round-trips through a checkpoint.
"""

from __future__ import annotations

import pytest
import torch

from study.store.checkpoints import load_checkpoint, restore_model, save_checkpoint
from trainables.balancing.base import SharedGraph
from trainables.config import ConfigError, TrialConfig, shared_units, view_level_units
from trainables.learner import Learner
from trainables.losses import task_losses
from trainables.metrics import efficiency
from trainables.models.build import build_model
from trainables.models.multitask import MultiTaskModel
from trainables.models.transfer import transfer_weights
from trainables.models.yolo import UNITS

SPLITS = [(level, k) for level, units in (("p3", 3), ("p4", 4), ("p5", 6)) for k in range(units + 1)]
TARGETS = torch.tensor([[0, 1, 10.0, 12.0, 30.0, 40.0], [1, 3, 20.0, 8.0, 50.0, 28.0]])
VIEWS = torch.tensor([0, 2])


def shared(level: str = "p4", k: int = -1, **flat) -> TrialConfig:
    return TrialConfig.from_partial({"model.cls_level": level, "model.shared_stages": k, **flat})


def test_default_is_todays_shared_model() -> None:
    # today's shared model at size n on the synthetic default (4 classes, 3 views): 1,775,476 parameters
    default = build_model(TrialConfig(), 4, 3)
    assert efficiency.count_parameters(default) == 1_775_476
    explicit = build_model(shared("p4", 4), 4, 3)
    assert list(explicit.state_dict()) == list(default.state_dict())
    assert not any(k.startswith("classifier.") for k in default.state_dict())
    assert len(default.trunk(torch.rand(1, 3, 64, 64))) == 2  # P3 and P4: stage5 + SPPF are the detector's


@pytest.mark.parametrize("level", ["p3", "p4", "p5"])
def test_nothing_shared_costs_what_dual_costs(level: str) -> None:
    # the dual classifier at the shared model's width (size n: 0.25, dual's default cls_width_multiple)
    none = build_model(shared(level, 0), 4, 3)
    dual = build_model(TrialConfig.from_partial({"arch": "dual", "model.cls_level": level}), 4, 3)
    assert efficiency.parameter_counts(none) == efficiency.parameter_counts(dual)
    assert efficiency.forward_gflops(none, 64, "cpu") == efficiency.forward_gflops(dual, 64, "cpu")
    assert none.shared_parameters() == [] and none.trunk_parameters() == []
    nets = none.networks()
    assert set(nets) == {"det", "cls"}
    assert {id(p) for net in nets.values() for p in net.parameters()} == {id(p) for p in none.parameters()}


def test_params_shared_counts_the_shared_units_only() -> None:
    counts = {k: efficiency.parameter_counts(build_model(shared("p4", k), 4, 3)) for k in range(5)}
    backbone = build_model(TrialConfig(), 4, 3).backbone
    for k, c in counts.items():
        assert c["shared"] == sum(p.numel() for u in backbone.units()[:k] for p in u.parameters())
    assert [c["shared"] for c in counts.values()] == sorted(c["shared"] for c in counts.values())
    assert counts[0]["shared"] == 0
    # stem + stage2 at n: Conv(3, 16, 6) + BN = 1,760; Conv(16, 32, 3) + BN and C3(32, 32, 1) = 9,472
    assert counts[1]["shared"] == 3 * 16 * 36 + 32 and counts[2]["shared"] == 11_232


@pytest.mark.parametrize(("level", "k"), SPLITS)
def test_every_parameter_receives_a_gradient_at_every_split(level: str, k: int) -> None:
    torch.manual_seed(0)
    cfg = shared(level, k)
    model = build_model(cfg, num_classes=4, num_views=3).train()
    det, logits = model(torch.rand(2, 3, 64, 64))
    _, losses = task_losses(det, logits, TARGETS, VIEWS, model, cfg.loss)
    losses.sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize(("level", "k"), SPLITS)
def test_gradnorm_w_is_the_last_shared_layer_at_every_split(level: str, k: int) -> None:
    torch.manual_seed(0)
    model = build_model(shared(level, k), 4, 3).eval()
    if k == 0:
        assert model.shared_parameters() == []
        return
    unit = model.backbone.units()[k - 1]
    layer = {"stem": unit, "sppf": getattr(unit, "cv2", None)}.get(UNITS[k - 1]) or unit[-1].cv3
    assert model.shared_parameters() == list(layer.parameters())
    # the feature-gradient trick: ‖∇_W L‖ read from the detached trunk output through W alone equals the
    # gradient norm of the ordinary graph, for each task
    images = torch.rand(2, 3, 64, 64)
    for loss_of in (lambda d, v: v.square().sum(), lambda d, v: sum(o.square().mean() for o in d)):
        direct = torch.autograd.grad(loss_of(*model(images)), model.shared_parameters())
        expected = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in direct]))
        graph = SharedGraph.split(model.trunk(images), model.shared_parameters())
        grads = graph.head_backward(loss_of(*model.heads(graph.detached)))
        torch.testing.assert_close(graph.param_grad_norm(grads), expected)
    # interference is measured over the shared units only
    assert {id(p) for p in model.trunk_parameters()} == {
        id(p) for u in model.backbone.units()[:k] for p in u.parameters()}


@pytest.mark.parametrize(("level", "k"), [("p4", -1), ("p4", 2), ("p5", 5), ("p3", 0)])  # -1: fully shared
def test_trunk_then_heads_equals_forward(level: str, k: int) -> None:
    torch.manual_seed(0)
    model = build_model(shared(level, k), 4, 3).eval()
    x = torch.rand(2, 3, 64, 96)
    det, logits = model(x)
    det2, logits2 = model.heads(model.trunk(x))
    torch.testing.assert_close(logits, logits2)
    for a, b in zip(det, det2, strict=True):
        torch.testing.assert_close(a, b)


def test_config_bounds_and_back_compat() -> None:
    assert shared_units(TrialConfig().model) == 4 and view_level_units("p5") == 6
    with pytest.raises(ConfigError, match=r"model.shared_stages=5 must be in \[0, 4\]") as err:
        shared("p4", 5)
    assert "\n" not in str(err.value)
    shared("p5", 6)
    with pytest.raises(ConfigError, match="applies to arch='shared' only"):
        TrialConfig.from_partial({"arch": "dual", "model.shared_stages": 2})
    TrialConfig.from_partial({"arch": "dual", "model.shared_stages": -1})  # the default is fine everywhere
    # a config stored before the key existed (a checkpoint, a Tune config, a trials.parquet row) reads as L
    old = {k: v for k, v in TrialConfig().to_flat().items() if k != "model.shared_stages"}
    assert TrialConfig.from_flat(old) == TrialConfig()
    assert TrialConfig.from_flat(shared("p4", 2).to_flat()).model.shared_stages == 2


def test_old_checkpoint_without_the_key_restores(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(TrialConfig(), 4, 3)
    config = {k: v for k, v in TrialConfig().to_flat().items() if k != "model.shared_stages"}
    state = {"format": 1, "arch": "shared", "config": config, "num_classes": 4, "num_views": 3,
             "model": model.state_dict(), "ema": {}}
    restored, cfg = restore_model(state)
    assert cfg.model.shared_stages == -1
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values(),
                                                 strict=True))


def test_middle_split_checkpoint_round_trips_bit_identically(tmp_path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = shared("p4", 2, **{"balancer.name": "gradnorm", "balancer.warmup_steps": 1})
    learner = Learner(cfg, 4, 3, torch.device("cpu"))
    images = torch.rand(2, 3, 64, 64)
    for _ in range(3):  # GradNorm acts from the second step: its weights have moved
        learner.step(images, TARGETS, VIEWS)
    state = {"format": 1, "arch": "shared", "config": cfg.to_flat(), "num_classes": 4, "num_views": 3,
             **learner.state_dict()}
    path = save_checkpoint(state, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(path)
    model, back = restore_model(loaded, path)
    assert back == cfg
    live = learner.model.state_dict()
    assert list(model.state_dict()) == list(live)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in live.items())
    learner.model.eval()
    model = learner.numerics.module(model)  # the memory format decides the kernels: compare like with like
    det, logits = model(images)
    det2, logits2 = learner.model(images)
    assert torch.equal(logits, logits2) and all(torch.equal(a, b) for a, b in zip(det, det2, strict=True))
    # and the training state: a learner restored from it takes the same next step, bit for bit
    learner.model.train()
    twin = Learner(cfg, 4, 3, torch.device("cpu"))
    twin.load_state_dict(loaded)
    a, b = learner.step(images, TARGETS, VIEWS), twin.step(images, TARGETS, VIEWS)
    assert torch.equal(a.weights, b.weights)
    assert all(torch.equal(x, y) for x, y in zip(learner.model.state_dict().values(),
                                                 twin.model.state_dict().values(), strict=True))


def test_nothing_shared_trains_as_dual_does() -> None:
    torch.manual_seed(0)
    cfg = shared("p4", 0, **{"balancer.name": "gradnorm", "balancer.warmup_steps": 1})
    learner = Learner(cfg, 4, 3, torch.device("cpu"))
    assert not learner.balanced and learner.balancer.name == "equal"
    assert set(learner.optimizers) == {"det", "cls"}
    # the view branch (its own units and head) learns at optim.cls_lr, as dual's classifier network does
    rates = {id(p): g["base_lr"] for g in learner.optimizers["cls"].param_groups for p in g["params"]}
    assert set(rates.values()) == {cfg.optim.cls_lr}
    assert set(rates) == {id(p) for m in (learner.model.classifier, learner.model.view_head) for p in m.parameters()}
    images = torch.rand(2, 3, 64, 64)
    for _ in range(3):
        out = learner.step(images, TARGETS, VIEWS)
        assert out.weights.tolist() == [1.0, 1.0]
    mid = Learner(shared("p4", 2, **{"balancer.name": "gradnorm", "optim.cls_lr": 0.003}), 4, 3, torch.device("cpu"))
    assert mid.balanced and mid.balancer.name == "gradnorm" and set(mid.optimizers) == {"main"}
    rate = {id(p): g["base_lr"] for g in mid.optimizers["main"].param_groups for p in g["params"]}
    view = {id(p) for m in mid.model.view_modules() for p in m.parameters()}
    assert {rate[i] for i in view} == {0.003} and {r for i, r in rate.items() if i not in view} == {0.001}
    assert view == {id(p) for p in mid.model.task_parameters()["cls"]}


def test_a_shared_checkpoint_initialises_every_branch_copy() -> None:
    torch.manual_seed(0)
    source = build_model(TrialConfig(), 4, 3).state_dict()
    target = build_model(shared("p4", 2), 4, 3)
    report = transfer_weights(target, source)
    assert report.skipped == []
    state = target.state_dict()
    for unit in ("stage3", "stage4"):  # the detector's and the view branch's copy of the same stage
        for name, value in source.items():
            if name.startswith(f"backbone.{unit}."):
                assert torch.equal(state[name], value) and torch.equal(state[f"classifier.{name}"], value)


def test_shared_stages_needs_two_tasks() -> None:
    with pytest.raises(ValueError, match="needs both tasks"):
        MultiTaskModel(4, 3, 0.33, 0.25, cls_level="p4", classify=False, shared_stages=2)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        MultiTaskModel(4, 3, 0.33, 0.25, cls_level="p4", shared_stages=5)


def test_a_trials_parquet_row_without_the_column_reads_as_fully_shared() -> None:
    import pandas as pd

    from study.store.trials import row_config

    old = TrialConfig().to_flat()
    old.pop("model.shared_stages")
    row = pd.DataFrame([old]).iloc[0]  # a row of a study written before the key existed
    assert TrialConfig.from_flat(row_config(row)).model.shared_stages == -1
    new = pd.DataFrame([shared("p4", 2).to_flat()]).iloc[0]  # numpy int64 from Parquet
    assert TrialConfig.from_flat(row_config(new)).model.shared_stages == 2
