"""Dual independent networks: a detector and a view classifier that share no weights.

No shared weights means no gradient interference (and nothing to balance) at the price of a second
backbone's compute. Each network gets its own optimizer (``networks()``), so the classifier can
have its own learning rate. Since no parameter gets gradient from both losses, per-network
optimizers step exactly as one optimizer over the summed loss with per-group learning rates would
(SGD and AdamW are per-parameter updates); only a global gradient-norm clip couples the networks
unless it is applied per network.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torchvision
from torch import Tensor, nn

from trainables.config import CLASSIFIER_BACKBONES
from trainables.models.multitask import HEAD, MultiTaskModel, ViewHead
from trainables.models.yolo import Detect


def build_classifier(
    backbone: str,
    num_views: int,
    depth_multiple: float,
    width_multiple: float,
    cls_hidden: int = HEAD.cls_hidden,
    cls_dropout: float = HEAD.cls_dropout,
    cls_level: str = HEAD.cls_level,
    cls_grid: int = HEAD.cls_grid,
) -> nn.Module:
    """The dual model's classifier: images (B, 3, H, W) -> a network whose output gives (B, V) logits.

    "yolo": a classify-only MultiTaskModel (its forward returns (None, logits)) of the given width.
    "resnet18" / "mobilenet_v3_small": torchvision's feature extractor built from scratch
    (weights=None) under our ViewHead, which replaces torchvision's pooling and classifier (for
    MobileNetV3 the whole classifier block, hidden layer included, so ``cls_hidden`` and ``cls_grid``
    mean the same everywhere).
    """
    if backbone == "yolo":
        return MultiTaskModel(
            num_classes=0, num_views=num_views, depth_multiple=depth_multiple, width_multiple=width_multiple,
            cls_hidden=cls_hidden, cls_dropout=cls_dropout, cls_level=cls_level, cls_grid=cls_grid, detect=False,
        )
    if backbone == "resnet18":
        net = torchvision.models.resnet18(weights=None)
        # conv1 .. layer4 under torchvision's own names, so a torchvision weights file loads by name
        features = nn.Sequential(OrderedDict((n, m) for n, m in net.named_children() if n not in ("avgpool", "fc")))
        return FeatureClassifier(features, ViewHead(net.fc.in_features, num_views, cls_hidden, cls_dropout, cls_grid))
    if backbone == "mobilenet_v3_small":
        net = torchvision.models.mobilenet_v3_small(weights=None)
        in_features = net.classifier[0].in_features  # (B, 576, H/32, W/32) out of net.features
        return FeatureClassifier(net.features, ViewHead(in_features, num_views, cls_hidden, cls_dropout, cls_grid))
    if backbone in CLASSIFIER_BACKBONES:  # named in trainables/config.py, not built here yet
        raise ValueError(f"classifier backbone {backbone!r} has no branch in build_classifier "
                         "(trainables/models/dual.py): add one")
    raise ValueError(f"classifier backbone {backbone!r} is not one of {list(CLASSIFIER_BACKBONES)}")


class FeatureClassifier(nn.Module):
    """A torchvision feature extractor (images -> (B, C, h, w)) followed by our ViewHead -> (B, V)."""

    def __init__(self, features: nn.Module, head: ViewHead) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))  # (B, V)


class DualModel(nn.Module):
    """A detect-only MultiTaskModel next to an independent classifier; the same API as the shared model.

    There is no trunk: ``trunk(images)`` hands the raw images (which need no gradient) to ``heads``,
    so the engine's split at the shared features finds nothing to send gradients into.
    """

    def __init__(self, detector: MultiTaskModel, classifier: nn.Module) -> None:
        super().__init__()
        if detector.detect is None or detector.view_head is not None:
            raise ValueError("DualModel: the detector must be a detect-only MultiTaskModel")
        self.detector = detector
        self.classifier = classifier
        self.num_classes = detector.num_classes
        heads = [m for m in classifier.modules() if isinstance(m, ViewHead)]
        if len(heads) != 1:
            raise ValueError("DualModel: the classifier must end in exactly one ViewHead")
        self.num_views = heads[0].num_views

    @property
    def detect(self) -> Detect:
        return self.detector.detect

    def trunk(self, images: Tensor) -> tuple[Tensor, ...]:
        return (images,)  # nothing shared: (B, 3, H, W)

    def heads(self, features: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
        """(images,) -> (raw detector outputs, L x (B, A, H_l, W_l, 5 + nc); view logits (B, V))."""
        (images,) = features
        det, _ = self.detector(images)
        out = self.classifier(images)
        logits = out[1] if isinstance(self.classifier, MultiTaskModel) else out  # (B, V)
        return det, logits

    def forward(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        return self.heads(self.trunk(images))

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def trunk_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {"shared": [], "det": list(self.detector.parameters()), "cls": list(self.classifier.parameters())}

    def networks(self) -> dict[str, nn.Module]:
        """Each network gets its own optimizer (and the classifier its own learning rate)."""
        return {"det": self.detector, "cls": self.classifier}
