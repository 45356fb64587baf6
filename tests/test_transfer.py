"""Transfer initialisation (model.weights / --weights): name-and-shape matching across architectures."""

from __future__ import annotations

import pytest
import torch
import torchvision

from study.train import main as train_main
from trainables.config import TrialConfig
from trainables.models.build import build_model
from trainables.models.transfer import WeightsError, load_initial_weights, transfer_weights

TINY = ["--epochs", "1", "--imgsz", "64", "--quiet", "--set", "data.synthetic_train=16", "--set",
        "data.synthetic_val=8", "--set", "data.synthetic_test=8", "--set", "train.interference_batches=1"]


def model(arch: str, **flat) -> torch.nn.Module:
    return build_model(TrialConfig.from_partial({"arch": arch, **flat}), num_classes=4, num_views=3).eval()


def test_a_model_initialised_from_its_own_checkpoint_predicts_the_same(tmp_path) -> None:
    assert train_main(["--arch", "shared", "--out", str(tmp_path / "a"), *TINY]) == 0
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    trained = build_model(TrialConfig.from_flat(state["config"]), 4, 3).eval()
    trained.load_state_dict(state["ema"]["module"] if state["ema"] else state["model"])
    fresh = model("shared")
    report = load_initial_weights(fresh, tmp_path / "a" / "checkpoint.pt")
    assert report.skipped == [] and len(report.matched) == len(fresh.state_dict())
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        (det_a, view_a), (det_b, view_b) = trained(images), fresh(images)
    torch.testing.assert_close(view_a, view_b, rtol=0, atol=0)
    for a, b in zip(det_a, det_b, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_shared_trunk_into_the_dual_detector_reports_its_matched_count() -> None:
    shared, dual = model("shared"), model("dual")
    report = transfer_weights(dual, shared.state_dict(), name="shared")
    detector = {f"detector.{k}" for k in dual.detector.state_dict()}
    assert detector <= set(report.matched)  # the whole detector: trunk, neck and head have equal shapes
    torch.testing.assert_close(dual.detector.backbone.stem.conv.weight, shared.backbone.stem.conv.weight)
    # the dual classifier is narrower (cls_width_multiple 0.25 vs n's 0.25 -> equal here, but its head
    # reads a 4x4 grid of the same width): whatever matched is counted, whatever did not is listed
    assert len(report.matched) + len(report.skipped) == len(dual.state_dict())
    assert "tensors matched" in report.summary()


def test_wider_source_tensors_are_skipped_and_listed() -> None:
    small, wide = model("det_only"), model("det_only", **{"model.size": "s"})
    source = wide.state_dict()
    report = transfer_weights(small, source)
    # only width-independent tensors fit: BatchNorm step counters, anchors, the Detect biases (3 x (5 + nc))
    assert all("num_batches_tracked" in k or "anchors" in k or (k.startswith("detect.convs.") and k.endswith(".bias"))
               for k in report.matched)
    assert small.backbone.stem.conv.weight.shape != source["backbone.stem.conv.weight"].shape
    assert "backbone.stem.conv.weight: shape (16, 3, 6, 6) != (32, 3, 6, 6)" in report.skipped


def test_torchvision_weights_load_into_the_dual_classifier(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")  # what torchvision's hub would cache
    dual = model("dual", **{"model.cls_backbone": "resnet18"})
    report = load_initial_weights(dual, tmp_path / "resnet18.pth")
    torch.testing.assert_close(dual.classifier.features.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert all(k.startswith("classifier.features.") for k in report.matched)
    assert report.unused == 2  # torchvision's fc.weight / fc.bias: our view head replaces them


def test_unusable_files_are_one_clear_error(tmp_path) -> None:
    with pytest.raises(WeightsError, match="no such file"):
        load_initial_weights(model("shared"), tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not weights")
    with pytest.raises(WeightsError, match="not a readable weights file"):
        load_initial_weights(model("shared"), tmp_path / "text.pt")
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="no tensor matches"):
        load_initial_weights(model("shared"), tmp_path / "other.pt")
