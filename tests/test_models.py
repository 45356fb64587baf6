"""The YOLOv5-style models: shapes, sizes, the trunk/heads split and the parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.config import CLASSIFIER_BACKBONES, ModelConfig, TrialConfig
from trainables.models.build import build_model
from trainables.models.dual import DualModel, build_classifier
from trainables.models.multitask import LEVELS, MultiTaskModel
from trainables.models.yolo import DEFAULT_ANCHORS, Backbone, Detect, scale_depth, scale_width

N = (0.33, 0.25)
S = (0.33, 0.50)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_scaling_rules_give_yolov5_channels_and_repeats() -> None:
    assert [scale_width(c, 0.25) for c in (64, 128, 256, 512, 1024)] == [16, 32, 64, 128, 256]
    assert [scale_width(c, 0.50) for c in (64, 128, 256, 512, 1024)] == [32, 64, 128, 256, 512]
    assert scale_width(64, 0.3) == 24  # 19.2 rounds up to a multiple of 8
    assert [scale_depth(n, 0.33) for n in (3, 6, 9, 3)] == [1, 2, 3, 1]
    assert [scale_depth(n, 0.67) for n in (3, 6, 9, 3)] == [2, 4, 6, 2]  # YOLOv5m
    assert Backbone(*N).out_channels == (64, 128, 256)


@pytest.mark.parametrize(("size", "expected"), [(N, 1_872_157), (S, 7_235_389)])
def test_detector_parameter_count_matches_yolov5_at_80_classes(size, expected) -> None:
    # YOLOv5 v6 prints 1,872,157 (n) and 7,235,389 (s) parameters for its COCO (80-class) models;
    # the same layer plan must give exactly the same count.
    det = MultiTaskModel(80, 1, *size, classify=False)
    assert count(det) == expected
    ours = count(MultiTaskModel(4, 1, *size, classify=False))
    print(f"detector {size}: {ours:,} params at nc=4")
    # Detect's 1x1 convs lose 3 anchors x 76 classes of outputs per level: weights and biases
    assert ours == expected - 3 * (80 - 4) * sum(det.neck.out_channels) - 3 * 3 * (80 - 4)


@pytest.mark.parametrize("imgsz", [64, 96, 128])
def test_output_shapes_for_any_multiple_of_32(imgsz: int) -> None:
    model = MultiTaskModel(4, 3, *N).eval()
    det, logits = model(torch.rand(2, 3, imgsz, imgsz))
    assert logits.shape == (2, 3)
    assert [tuple(o.shape) for o in det] == [(2, 3, imgsz // s, imgsz // s, 9) for s in (8, 16, 32)]
    assert model.detect.decode(det).shape == (2, 3 * sum((imgsz // s) ** 2 for s in (8, 16, 32)), 9)


def test_s_preset_and_non_square_input() -> None:
    model = MultiTaskModel(2, 5, *S, cls_hidden=32, cls_dropout=0.1, cls_level="p5").eval()  # the trunk ends at P5
    p3, p4, p5 = model.trunk(torch.rand(2, 3, 64, 96))
    assert (p3.shape, p4.shape, p5.shape) == ((2, 128, 8, 12), (2, 256, 4, 6), (2, 512, 2, 3))
    det, logits = model.heads((p3, p4, p5))
    assert [tuple(o.shape) for o in det] == [(2, 3, 8, 12, 7), (2, 3, 4, 6, 7), (2, 3, 2, 3, 7)]
    assert logits.shape == (2, 5)


def test_detect_bias_priors() -> None:
    head = Detect(4, (64, 128, 256))
    assert head.anchors.shape == (3, 3, 2)
    assert head.anchors.tolist() == [[list(a) for a in level] for level in DEFAULT_ANCHORS]
    for conv, stride, c in zip(head.convs, (8, 16, 32), (64, 128, 256), strict=True):
        bias = conv.bias.view(3, 9)
        spread = 1 / math.sqrt(c)  # PyTorch's default bias init lies in +-1/sqrt(fan_in)
        obj_prior = math.log(8 / (640 / stride) ** 2)  # stride 8: log(8 / 6400) = -6.68
        cls_prior = math.log(0.6 / (4 - 0.99))  # -1.61
        assert (bias[:, 4] - obj_prior).abs().max() <= spread
        assert (bias[:, 5:] - cls_prior).abs().max() <= spread


def test_decode_of_zero_logits_gives_cell_centres_and_anchor_sizes() -> None:
    head = Detect(2, (8, 8, 8))
    raw = [torch.zeros(1, 3, 64 // s, 64 // s, 7) for s in (8, 16, 32)]
    rows = head.decode(raw)  # (1, 3 * (64 + 16 + 4), 7)
    assert rows.shape == (1, 252, 7)
    # level 0, anchor 1, cell (y=2, x=5): index 1 * 64 + 2 * 8 + 5
    torch.testing.assert_close(rows[0, 64 + 16 + 5], torch.tensor([44.0, 20.0, 16, 30, 0.5, 0.5, 0.5]))
    # level 2, anchor 2, cell (y=1, x=0): after 192 + 48 rows, index 2 * 4 + 1 * 2 + 0
    torch.testing.assert_close(rows[0, 240 + 10], torch.tensor([16.0, 48.0, 373, 326, 0.5, 0.5, 0.5]))
    # the largest reachable offset and size: sigmoid -> 1 gives centre + 1.5 cells and 4x the anchor
    raw[0][0, 0, 0, 0, :4] = 50.0
    torch.testing.assert_close(head.decode(raw)[0, 0, :4], torch.tensor([12.0, 12.0, 40, 52]))


def test_shared_parameters_are_the_last_layer_both_tasks_read() -> None:
    assert MultiTaskModel(4, 3, *N).cls_level == LEVELS.index(ModelConfig.cls_level)  # the config's default level
    model = MultiTaskModel(4, 3, *N, cls_level="p5")
    assert model.shared_parameters() == list(model.backbone.sppf.cv2.parameters())
    assert len(model.shared_parameters()) == 3  # conv weight, BN scale, BN shift
    p4 = MultiTaskModel(4, 3, *N, cls_level="p4")
    assert p4.shared_parameters() == list(p4.backbone.stage4[-1].cv3.parameters())
    p3 = MultiTaskModel(4, 3, *N, cls_level="p3")
    assert p3.shared_parameters() == list(p3.backbone.stage3[-1].cv3.parameters())
    assert MultiTaskModel(4, 3, *N, classify=False).shared_parameters() == []
    assert MultiTaskModel(4, 3, *N, detect=False).shared_parameters() == []


def test_p4_view_gradient_reaches_the_shared_layer_but_no_deeper_layer() -> None:
    torch.manual_seed(0)
    model = MultiTaskModel(4, 3, *N, cls_level="p4")
    det, logits = model(torch.rand(2, 3, 64, 64))
    logits.square().sum().backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters())
    assert all(p.grad is None for p in model.backbone.stage5.parameters())  # detector-only layers
    model.zero_grad(set_to_none=True)
    sum(o.square().mean() for o in det).backward()
    assert all(p.grad.abs().sum() > 0 for p in model.shared_parameters())


@pytest.mark.parametrize("arch", ["shared", "det_only", "cls_only", "dual"])
def test_task_parameters_partition_all_parameters(arch: str) -> None:
    model = build_model(TrialConfig.from_partial({"arch": arch}), num_classes=4, num_views=3)
    groups = model.task_parameters()
    assert set(groups) == {"shared", "det", "cls"}
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert bool(groups["det"]) == (arch != "cls_only")
    assert bool(groups["cls"]) == (arch != "det_only")
    assert bool(groups["shared"]) == (arch == "shared")
    if arch in ("det_only", "cls_only"):
        assert {id(p) for p in model.trunk_parameters()} == {id(p) for p in model.backbone.parameters()}
    if arch == "shared":  # the shared units (by default up to the view head's level, P4): not stage5 + SPPF
        assert {id(p) for p in model.trunk_parameters()} == {id(p) for p in groups["shared"]}
        assert {id(p) for p in model.backbone.stage5.parameters()} <= {id(p) for p in groups["det"]}
    if arch in ("shared", "det_only", "cls_only"):
        assert model.networks() == {"main": model}


@pytest.mark.parametrize("arch", ["shared", "det_only", "cls_only", "dual"])
def test_build_model_arms(arch: str) -> None:
    model = build_model(TrialConfig.from_partial({"arch": arch}), num_classes=4, num_views=3).eval()
    det, logits = model(torch.rand(2, 3, 64, 64))
    assert (det is None) == (arch == "cls_only")
    assert (logits is None) == (arch == "det_only")
    if arch != "cls_only":
        assert model.detect is not None and model.detect.num_classes == 4
    if logits is not None:
        assert logits.shape == (2, 3)


@pytest.mark.parametrize("backbone", CLASSIFIER_BACKBONES)
def test_dual_shares_nothing(backbone: str) -> None:
    torch.manual_seed(0)
    detector = MultiTaskModel(4, 3, *N, classify=False)
    model = DualModel(detector, build_classifier(backbone, 3, *N, cls_hidden=8))
    assert model.num_views == 3 and model.detect is detector.detect
    assert model.shared_parameters() == [] and model.trunk_parameters() == []
    nets = model.networks()
    assert set(nets) == {"det", "cls"}
    assert not {id(p) for p in nets["det"].parameters()} & {id(p) for p in nets["cls"].parameters()}
    images = torch.rand(2, 3, 64, 64)
    (features,) = model.trunk(images)
    assert features is images and not features.requires_grad
    det, logits = model.heads((images,))
    assert logits.shape == (2, 3) and len(det) == 3
    logits.sum().backward()  # the view loss reaches the classifier only
    assert all(p.grad is None for p in nets["det"].parameters())
    assert any(p.grad is not None for p in nets["cls"].parameters())


def test_a_backbone_named_in_the_config_but_not_built_says_where_to_build_it(monkeypatch) -> None:
    import trainables.models.dual as dual

    monkeypatch.setattr(dual, "CLASSIFIER_BACKBONES", (*CLASSIFIER_BACKBONES, "toy_net"))  # as config.py lists it
    with pytest.raises(ValueError, match=r"'toy_net' has no branch in build_classifier \(trainables/models/dual.py\)"):
        dual.build_classifier("toy_net", 3, *N)
    with pytest.raises(ValueError, match=r"'nope' is not one of \[.*'mobilenet_v3_small', 'toy_net'\]"):
        dual.build_classifier("nope", 3, *N)


def test_dual_classifier_width_and_config_choice() -> None:
    cfg = TrialConfig.from_partial({"arch": "dual", "model.cls_width_multiple": 0.5})
    model = build_model(cfg, num_classes=4, num_views=3)
    assert model.classifier.backbone.out_channels == (128, 256)  # stops at P4, the level its head reads
    assert model.detector.backbone.out_channels == (64, 128, 256)
    cfg = TrialConfig.from_partial({"arch": "dual", "model.cls_backbone": "mobilenet_v3_small"})
    model = build_model(cfg, num_classes=4, num_views=3)
    assert type(model.classifier.features[0][0]).__name__ == "Conv2d"  # torchvision's MobileNetV3 stem


@pytest.mark.parametrize("level", ["p3", "p4", "p5"])
@pytest.mark.parametrize(("arch", "backbone"), [("shared", "yolo"), ("det_only", "yolo"), ("cls_only", "yolo"),
                                                *(("dual", backbone) for backbone in CLASSIFIER_BACKBONES)])
def test_every_parameter_receives_a_gradient(arch: str, backbone: str, level: str) -> None:
    # "Every parameter has a job": a model builds only layers whose output a loss reads, so the
    # parameter counts, FLOPs and latency of the study's cost columns count live layers only.
    from trainables.losses import task_losses

    torch.manual_seed(0)
    cfg = TrialConfig.from_partial({"arch": arch, "model.cls_level": level, "model.cls_backbone": backbone})
    model = build_model(cfg, num_classes=4, num_views=3).train()
    det, logits = model(torch.rand(2, 3, 64, 64))
    targets = torch.tensor([[0, 1, 10.0, 12.0, 30.0, 40.0], [1, 3, 20.0, 8.0, 50.0, 28.0]])
    _, losses = task_losses(det, logits, targets, torch.tensor([0, 2]), model, cfg.loss)
    losses.sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_classifier_backbone_stops_at_its_level() -> None:
    for level, built in (("p3", 1), ("p4", 2), ("p5", 3)):
        model = MultiTaskModel(4, 3, *N, cls_level=level, detect=False)
        assert len(model.backbone.out_channels) == built
        assert len(model.trunk(torch.rand(1, 3, 64, 64))) == built
    with_det = MultiTaskModel(4, 3, *N, cls_level="p3")
    assert len(with_det.backbone.out_channels) == 3  # the detector reads P3, P4 and P5


@pytest.mark.parametrize("level", ["p5", "p3"])
def test_split_at_the_trunk_gives_the_shared_layer_gradient(level: str) -> None:
    # The engine runs the heads on detached trunk features and reads ‖∇_W L‖ through W only;
    # that must equal the gradient norm of the ordinary, unsplit graph.
    from trainables.balancing.base import SharedGraph

    torch.manual_seed(0)
    model = MultiTaskModel(4, 3, *N, cls_level=level).eval()
    images = torch.rand(2, 3, 64, 64)
    _, logits = model(images)
    direct = torch.autograd.grad(logits.square().sum(), model.shared_parameters())
    expected = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in direct]))
    shared = SharedGraph.split(model.trunk(images), model.shared_parameters())
    _, logits = model.heads(shared.detached)
    feature_grads = shared.head_backward(logits.square().sum())
    torch.testing.assert_close(shared.param_grad_norm(feature_grads), expected)
