"""engine.fit on tiny synthetic data: what an epoch reports, exact resume, divergence, every architecture."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.config import TrialConfig
from trainables.data.loader import load_data
from trainables.engine import fit

TINY = {"data.imgsz": 64, "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_test": 8,
        "data.batch": 8, "train.interference_batches": 1, "train.epochs": 2}


def tiny(**flat) -> TrialConfig:
    return TrialConfig.from_partial({**TINY, **flat})


@pytest.fixture(scope="module")
def data():
    return load_data(tiny().data, seed=0)


class Stop(Exception):
    pass


def test_epoch_reports_every_metric_and_a_weights_only_checkpoint(data, tmp_path):
    reports = []
    result = fit(tiny(**{"balancer.name": "gradnorm"}), data, report=lambda m, s: reports.append((m, s)))
    assert result.status == "finished" and len(reports) == 2
    metrics, state = reports[-1]
    assert metrics["status"] == "finished" and metrics["epoch"] == 2
    for key in ("loss.box", "loss.obj", "loss.cls", "loss.det", "loss.view", "weight.det", "weight.view",
                "grad.cosine", "grad.norm_det", "grad.norm_view", "val.map", "val.map50", "val.view_accuracy",
                "val.objective", "eff.gflops", "eff.params_total", "eff.latency_ms_b1", "eff.peak_mem_mb",
                "time.epoch_s", "throughput.img_per_s"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert -1 <= metrics["grad.cosine"] <= 1 and 0 <= metrics["val.map"] <= 1
    assert metrics["weight.det"] + metrics["weight.view"] == pytest.approx(2.0, abs=1e-5)
    assert metrics["val.objective"] == pytest.approx(0.5 * metrics["val.map"] + 0.5 * metrics["val.view_accuracy"])
    torch.save(state, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)  # plain tensors and values only
    assert loaded["config"] == tiny(**{"balancer.name": "gradnorm"}).to_flat()


@pytest.mark.parametrize(("balancer", "split"), [("equal", -1), ("gradnorm", -1), ("gradnorm", 2), ("gradnorm", 0)])
def test_resume_continues_exactly(data, balancer, split):
    # GradNorm active from its second step (warm-up 1 of the run's 4 steps): its weights, their Adam state
    # and its initial losses must all come back from the checkpoint for the run to end bit-identical; at a
    # middle split too, and with nothing shared (two optimizers, equal weights)
    cfg = tiny(**{"balancer.name": balancer, **({"balancer.warmup_steps": 1} if balancer == "gradnorm" else {}),
                  "model.shared_stages": split})
    torch.set_num_threads(1)
    straight = []
    fit(cfg, data, report=lambda m, s: straight.append(s))

    saved = []

    def stop_after_first(metrics, state):
        saved.append(state)
        raise Stop

    with pytest.raises(Stop):
        fit(cfg, data, report=stop_after_first)
    resumed = []
    fit(cfg, data, report=lambda m, s: resumed.append(s), resume=saved[0])
    assert len(resumed) == 1
    a, b = straight[-1]["model"], resumed[-1]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight[-1]["history"][-1]["loss.det"] == resumed[-1]["history"][-1]["loss.det"]
    assert straight[-1]["history"][-1]["weight.det"] == resumed[-1]["history"][-1]["weight.det"]
    if balancer == "gradnorm" and split != 0:
        assert straight[-1]["history"][-1]["weight.det"] != 1.0  # the weights did move
        assert straight[-1]["balancer"].keys() == resumed[-1]["balancer"].keys()


def test_nan_loss_stops_with_a_clear_status(data):
    # a balancer whose NaN weights poison the network at step 1: step 2's losses are NaN
    reports = []
    result = fit(tiny(**{"balancer.name": "tests.faults:NaNWeights"}), data, report=lambda m, s: reports.append(m))
    assert result.status == "diverged" and "non-finite loss at epoch 1, step 2" in result.reason
    assert reports[-1]["status"] == "diverged" and math.isnan(reports[-1]["val.objective"])


@pytest.mark.parametrize("arch", ["dual", "det_only", "cls_only"])
def test_other_architectures(data, arch):
    reports = []
    cfg = tiny(arch=arch, **{"train.epochs": 1, "optim.cls_lr": 0.003})
    fit(cfg, data, report=lambda m, s: reports.append((m, s)))
    metrics, state = reports[-1]
    assert math.isnan(metrics["grad.cosine"])  # nothing shared: no interference by construction
    if arch == "dual":
        assert set(state["optimizers"]) == {"det", "cls"}
        assert metrics["lr_cls"] / metrics["lr"] == pytest.approx(0.003 / cfg.optim.lr)
    if arch == "det_only":
        assert math.isnan(metrics["val.view_accuracy"]) and metrics["val.objective"] == metrics["val.map"]
    if arch == "cls_only":
        assert math.isnan(metrics["val.map"]) and metrics["val.objective"] == metrics["val.view_accuracy"]


@pytest.mark.parametrize("arch", ["shared", "dual", "det_only", "cls_only"])
def test_class_weighted_view_loss_runs_for_every_architecture(data, arch):
    # loss.view_class_weights once crashed the shared model after epoch 1: the gradient-interference
    # measurement called the task losses without the weights
    reports = []
    fit(tiny(arch=arch, **{"loss.view_class_weights": True}), data, report=lambda m, s: reports.append(m))
    assert [m["status"] for m in reports] == ["running", "finished"]
    if arch != "det_only":
        assert math.isfinite(reports[-1]["loss.view"]) and math.isfinite(reports[-1]["val.view_accuracy"])
    if arch == "shared":
        assert math.isfinite(reports[-1]["grad.cosine"])


def test_mosaic_epochs_then_whole_frames(data):
    # data.close_mosaic=1 of 2 epochs: the first epoch trains on mosaics, the last on whole frames
    from trainables.data.loader import iterate_batches

    cfg = tiny(**{"data.mosaic": True, "data.close_mosaic": 1})
    g = torch.Generator().manual_seed(0)
    plain = list(iterate_batches(data, "train", 8, shuffle=True, generator=torch.Generator().manual_seed(0),
                                 augment=cfg.data))
    mosaic = list(iterate_batches(data, "train", 8, shuffle=True, generator=g, augment=cfg.data, mosaic=True))
    for (_, _, views_plain, idx_plain), (images, targets, views, idx) in zip(plain, mosaic, strict=True):
        assert torch.equal(views, views_plain) and (idx == idx_plain).all()  # a mosaic keeps its anchor's view
        assert targets.numel() == 0 or ((targets[:, 2:] >= 0).all() and (targets[:, 2:] <= images.shape[-1]).all())
    reports = []
    fit(cfg, data, report=lambda m, s: reports.append(m))
    assert [m["status"] for m in reports] == ["running", "finished"]
    assert all(math.isfinite(m["loss.det"]) for m in reports)


def test_dual_clips_each_network_alone():
    # a spike in the classifier's gradient must not shrink the detector's step (one clip per network)
    from trainables.learner import Learner

    cfg = tiny(arch="dual", **{"optim.name": "sgd", "optim.weight_decay": 0.0,
                               "optim.grad_clip": 1.0})
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 1, 10.0, 12.0, 30.0, 40.0]])
    views = torch.tensor([0, 2])
    steps = []
    for spike in (1.0, 1e4):
        torch.manual_seed(0)
        learner = Learner(cfg, 4, 3, torch.device("cpu"))
        with torch.no_grad():
            learner.model.classifier.view_head.net[-1].weight.mul_(spike)  # huge logits -> huge view gradient
        before = [p.detach().clone() for p in learner.model.detector.parameters()]
        learner.step(images, targets, views)
        steps.append([p.detach() - b for p, b in zip(learner.model.detector.parameters(), before, strict=True)])
    for calm, spiked in zip(*steps, strict=True):  # steps are ~1e-3 x a unit-norm gradient: compare them tightly
        torch.testing.assert_close(calm, spiked, rtol=1e-4, atol=1e-9)
    assert max(float(d.abs().max()) for d in steps[1]) > 1e-5  # the detector did take a real step


@pytest.mark.parametrize("arch", ["shared", "dual", "det_only", "cls_only"])
def test_what_only_the_view_task_trains_learns_at_cls_lr(arch):
    """One rule for every architecture: a parameter only the view loss reaches (the model's ``cls`` part: the
    shared model's view head, dual's classifier network, cls_only's whole network) learns at optim.cls_lr,
    every other at optim.lr."""
    from trainables.learner import Learner

    learner = Learner(tiny(arch=arch, **{"optim.lr": 0.002, "optim.cls_lr": 0.005}), 4, 3, torch.device("cpu"))
    rate = {id(p): g["base_lr"] for opt in learner.optimizers.values() for g in opt.param_groups for p in g["params"]}
    view_only = {id(p) for p in learner.model.task_parameters()["cls"]}
    assert len(rate) == sum(1 for _ in learner.model.parameters())
    assert all(r == (0.005 if pid in view_only else 0.002) for pid, r in rate.items())
    assert bool(view_only) == (arch != "det_only") and (arch != "cls_only" or len(view_only) == len(rate))
