"""``python -m study.export``: a real tiny checkpoint to ONNX, run by onnxruntime, finished by NMS like training.

Skipped when onnx / onnxscript / onnxruntime are not installed (they are dev extras).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from study.cli import run_cli  # noqa: E402
from study.export import ATOL, RTOL, Deployable, main, sample_images  # noqa: E402
from study.modelcard.latency import REPEATS  # noqa: E402
from study.store.checkpoints import restore_model  # noqa: E402
from tests.test_evaluate import tiny_checkpoint  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.models.build import build_model  # noqa: E402
from trainables.postprocess import postprocess  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    path, state, _ = tiny_checkpoint(folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = run_cli(main, [str(path), "--onnx", str(folder / "m.onnx")])
    return code, printed.getvalue(), folder / "m.onnx", state


def finish_like_training(candidates: np.ndarray, conf: float, iou: float, max_det: int) -> list[tuple]:
    """The export's documented recipe: score = objectness x best class probability, threshold, class-aware NMS."""
    out = []
    for rows in torch.from_numpy(candidates):  # (N, 5 + nc)
        scores, labels = (rows[:, 4:5] * rows[:, 5:]).max(dim=1)
        keep = scores > conf
        boxes, scores, labels = rows[keep, :4], scores[keep], labels[keep]
        kept = batched_nms(boxes, scores, labels, iou)[:max_det]
        out.append((boxes[kept], scores[kept], labels[kept]))
    return out


def test_export_checks_itself_and_onnx_matches_pytorch_on_a_new_batch_size(exported):
    code, out, onnx_path, state = exported
    assert code == 0 and "check: ONNX matches PyTorch" in out and onnx_path.stat().st_size > 100_000
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["candidates", "view_logits"]
    images = sample_images(state, 64, count=3)  # the export used batch 2: the batch axis is dynamic
    candidates, logits = session.run(None, {"images": images.numpy()})
    model, cfg = restore_model(state)
    with torch.no_grad():
        det_out, want_logits = model(images)
    nc = state["num_classes"]
    anchors_cells = 3 * sum((64 // s) ** 2 for s in (8, 16, 32))
    assert candidates.shape == (3, anchors_cells, 5 + nc) and logits.shape == (3, state["num_views"])
    np.testing.assert_allclose(logits, want_logits.numpy(), rtol=1e-4, atol=1e-4)
    # the ONNX candidates, finished as documented, give the detections of the training pipeline
    want = postprocess(det_out, model.detect, cfg.train.conf_thres, cfg.train.iou_thres, cfg.train.max_det)
    got = finish_like_training(candidates, cfg.train.conf_thres, cfg.train.iou_thres, cfg.train.max_det)
    for (gb, gs, gl), (wb, ws, wl) in zip(got, want, strict=True):
        assert len(gb) == len(wb) > 0
        # box pixels: the export's own rule, ATOL x image size (float32 reassociation across ~60 layers,
        # amplified by the (2σ)² x anchor decode; measured up to 4.5e-3 px at 64 px)
        torch.testing.assert_close(gb, wb, rtol=RTOL, atol=ATOL * cfg.data.imgsz)
        torch.testing.assert_close(gs, ws, rtol=1e-4, atol=1e-5)
        assert torch.equal(gl, wl)


def test_a_checkpoint_exported_by_itself_has_a_card_that_says_what_it_lacks(exported):
    code, out, onnx_path, state = exported
    card = json.loads(onnx_path.with_suffix(".card.json").read_text())
    assert code == 0 and f"card: {onnx_path.with_suffix('.card.md')}" in out
    assert card["chosen"] is None and card["heldout"] is None and "no held-out score" in card["heldout_note"]
    assert card["latency"]["repeats"] == REPEATS and card["latency"]["median_ms"] > 0
    assert card["model"]["onnx"]["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert card["model"]["checkpoint"]["file"] == "checkpoint.pt" and card["training"]["epoch"] == state["epoch"]
    assert all(card["model"]["onnx"]["check"]["ok"].values())
    assert card["data"]["splits"]["train"]["frames"] == state["config"]["data.synthetic_train"]
    md = onnx_path.with_suffix(".card.md").read_text()
    assert "A checkpoint exported by itself" in md and "## Intended use" in md and "## Latency" in md


def test_wrapper_outputs_follow_the_models_tasks(exported):
    *_, state = exported
    model, _ = restore_model(state)
    assert Deployable(model).output_names() == ["candidates", "view_logits"]
    for arch, names in (("det_only", ["candidates"]), ("cls_only", ["view_logits"]),
                        ("dual", ["candidates", "view_logits"])):
        cfg = TrialConfig.from_flat({**state["config"], "arch": arch})
        wrapper = Deployable(build_model(cfg, state["num_classes"], state["num_views"])).eval()
        assert wrapper.output_names() == names, arch
        outputs = wrapper(torch.zeros(1, 3, 64, 64))
        assert len(outputs) == len(names)


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert run_cli(main, [str(tmp_path / "bad.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not a readable checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_a_model_at_a_middle_split_exports_and_matches(tmp_path):
    # the view branch's own stages after the split (model.shared_stages=2) are part of the exported graph
    path, _, _ = tiny_checkpoint(tmp_path, **{"model.shared_stages": 2, "balancer.name": "gradnorm"})
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = run_cli(main, [str(path), "--onnx", str(tmp_path / "m.onnx")])
    assert code == 0 and "check: ONNX matches PyTorch" in printed.getvalue()
