"""``python -m study.export CHECKPOINT --onnx OUT.onnx``: the trained model as one ONNX file.

The exported graph takes ``images`` (B, 3, S, S) float32 RGB in [0, 1], letterboxed to the trained
size S (pad value 114/255), and returns (for the tasks the model has):

  ``candidates``   (B, N, 5 + nc) decoded detection candidates, one row per anchor and cell:
                   x1, y1, x2, y2 (pixels of the S x S input), objectness probability, class
                   probabilities. NMS is *not* in the graph (kept portable across runtimes); finish
                   as training does (trainables/postprocess.py): score = objectness x best class
                   probability, keep score > conf_thres, class-aware NMS at iou_thres, cap max_det.
  ``view_logits``  (B, V) view classifier logits (softmax for probabilities).

The batch dimension is dynamic. After export the ONNX outputs are compared with PyTorch's on sample
images with onnxruntime (when installed): every element must agree within ``--atol`` + ``--rtol`` x |PyTorch| (both
1e-3 by default; box coordinates are pixels, so for them the absolute part is ``--atol`` x image size),
otherwise the command fails.

Beside ``OUT.onnx`` it writes a model card, ``OUT.card.md`` and ``OUT.card.json`` (study/modelcard/): what the
model is, its data and split, its held-out scores, the precision it trained in, its batch-1 latency through
onnxruntime on this CPU (measured here: ``--latency-repeats`` timed calls after warm-up), its limitations and the
code that made it. ``--best STORAGE/NAME`` exports a study's chosen model (study/modelcard/choice.py says which
checkpoint that is: of a folds study, fold 0's or ``--fold K``'s) and copies its checkpoint beside as ``OUT.pt``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from study.cli import CHECKPOINT_HELP, ArgumentParser, run_cli
from study.errors import UsageError
from study.modelcard.latency import REPEATS, WARMUP, onnx_latency
from study.store.atomic import atomic_path
from study.store.checkpoints import load_checkpoint, restore_model

ATOL = 1e-3  # absolute for probabilities and logits; for box pixels ATOL x image size (0.32 px at 320)
RTOL = 1e-3  # float32 reassociation over ~60 layers, amplified by the (2σ)² × anchor box decode


class Deployable(nn.Module):
    """The model with the detector's decoding inside: images -> (candidates, view_logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.has_detector = getattr(model, "detect", None) is not None
        probe_views = getattr(model, "view_head", None) is not None or getattr(model, "classifier", None) is not None
        self.has_classifier = probe_views

    def output_names(self) -> list[str]:
        return [n for n, on in (("candidates", self.has_detector), ("view_logits", self.has_classifier)) if on]

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        det_out, logits = self.model(images)  # L x (B, A, H, W, 5 + nc); (B, V)
        outputs = []
        if self.has_detector:
            rows = self.model.detect.decode(det_out)  # (B, N, 5 + nc): cx, cy, w, h, obj, class probs
            boxes = box_convert(rows[..., :4], "cxcywh", "xyxy")  # (B, N, 4)
            outputs.append(torch.cat([boxes, rows[..., 4:]], dim=-1))  # (B, N, 5 + nc)
        if self.has_classifier:
            outputs.append(logits)  # (B, V)
        return tuple(outputs)


def sample_images(state: dict[str, Any], imgsz: int, count: int = 2) -> Tensor:
    """Synthetic echo-like frames at ``imgsz`` (B, 3, S, S) in [0, 1]: realistic inputs without a dataset."""
    from trainables.data.synthetic import synthetic_data

    data = synthetic_data(count, 1, 1, imgsz, seed=12345)
    return torch.from_numpy(data.images[data.splits["train"][:count]]).float() / 255.0


def export_onnx(state: dict[str, Any], out: Path, imgsz: int | None = None, path: Path | str = "checkpoint",
                opset: int = 18) -> tuple[Deployable, list[str]]:
    """Write ``out`` (one file, weights inside); returns the wrapper and its output names."""
    model, cfg = restore_model(state, path)
    size = imgsz or cfg.data.imgsz
    if size % 32:
        raise UsageError(f"--imgsz {size} must be a multiple of 32 (the detector's largest stride)")
    wrapper = Deployable(model).eval()
    names = wrapper.output_names()
    example = torch.zeros(2, 3, size, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(wrapper, (example,), str(out), input_names=["images"], output_names=names,
                      dynamic_shapes={"images": {0: batch}}, opset_version=opset, external_data=False,
                      dynamo=True, verbose=False)
    return wrapper, names


def check_onnx(wrapper: Deployable, out: Path, images: Tensor, atol: float = ATOL,
               rtol: float = RTOL) -> dict[str, tuple[float, bool]]:
    """Per output: (max |ONNX - PyTorch|, whether every element is within atol + rtol * |PyTorch|),
    on ``images`` with onnxruntime on the CPU. Box coordinates (pixels) use atol x image size."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in wrapper(images)]
    names = [o.name for o in session.get_outputs()]
    diffs = {}
    for name, g, w in zip(names, got, want, strict=True):
        if g.shape != w.shape:
            raise RuntimeError(f"ONNX output {name} has shape {g.shape}, PyTorch {w.shape}")
        if name == "candidates":  # box columns are pixels: their absolute tolerance scales with the image
            boxes_ok = np.allclose(g[..., :4], w[..., :4], rtol=rtol, atol=atol * images.shape[-1])
            ok = boxes_ok and np.allclose(g[..., 4:], w[..., 4:], rtol=rtol, atol=atol)
        else:
            ok = np.allclose(g, w, rtol=rtol, atol=atol)
        diffs[name] = (float(np.abs(g - w).max()), bool(ok))
    return diffs


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", help=CHECKPOINT_HELP)
    p.add_argument("--best", metavar="STORAGE/NAME",
                   help="export this study's chosen model instead (study/modelcard/choice.py says which checkpoint)")
    p.add_argument("--method", default=None, metavar="ARCH/BALANCER",
                   help="with --best: the method whose chosen model to export (needed when the study has several)")
    p.add_argument("--fold", type=int, default=None, metavar="K",
                   help="with --best of a --folds study: fold K's model (default 0; no fold is chosen by a score)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx",
                   help="the ONNX file to write; the model card goes beside it (OUT.card.md, OUT.card.json)")
    p.add_argument("--imgsz", type=int, default=None, help="input size (default: the size it was trained at)")
    p.add_argument("--atol", type=float, default=ATOL, help=f"ONNX vs PyTorch absolute tolerance (default {ATOL:g})")
    p.add_argument("--rtol", type=float, default=RTOL, help=f"ONNX vs PyTorch relative tolerance (default {RTOL:g})")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--latency-repeats", type=int, default=REPEATS, metavar="N",
                   help=f"timed batch-1 onnxruntime calls for the card's latency, after {WARMUP} warm-up calls "
                        f"(default {REPEATS})")
    return p


@dataclass
class Exported:
    """What ``export_with_card`` wrote: the ONNX file, its check (None without onnxruntime), the card's files."""

    onnx: Path
    outputs: list[str]
    check: dict[str, Any] | None
    card: dict[str, Any] | None = None
    card_files: tuple[Path, ...] = ()

    @property
    def passed(self) -> bool:
        return self.check is None or all(self.check["ok"].values())


def export_with_card(state: dict[str, Any], path: Path, out: Path, chosen: Any = None, imgsz: int | None = None,
                     atol: float = ATOL, rtol: float = RTOL, opset: int = 18, repeats: int = REPEATS) -> Exported:
    """Export ``state`` to ``out``, check it against PyTorch, time it and write its card beside it (no card when the
    check fails: that file is not to be deployed). ``chosen``: the study's choice (study/modelcard/choice.py) when
    the checkpoint is a study's chosen model. Prints what it does."""
    from study.modelcard.card import build_card, write_card
    from study.store.checkpoints import study_of

    wrapper, names = export_onnx(state, out, imgsz, path, opset)
    size = imgsz or int(state["config"]["data.imgsz"])
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): input images (B, 3, {size}, {size}) in [0, 1], "
          f"outputs {', '.join(names)}")
    check, latency, note = None, None, ""
    if importlib.util.find_spec("onnxruntime") is None:
        note = "onnxruntime is not installed"
        print("onnxruntime is not installed: the ONNX outputs were not checked against PyTorch nor timed "
              "(pip install onnxruntime)", file=sys.stderr)
    else:
        images = sample_images(state, size)
        diffs = check_onnx(wrapper, out, images, atol, rtol)
        check = {"images": int(images.shape[0]), "atol": atol, "rtol": rtol,
                 "max_abs_diff": {k: d for k, (d, _) in diffs.items()}, "ok": {k: ok for k, (_, ok) in diffs.items()}}
        shown = ", ".join(f"{k} {d:.2e}" for k, (d, _) in diffs.items())
        print(f"check: max |ONNX - PyTorch| on {len(images)} sample images: {shown} (tolerance {atol:g} + {rtol:g} x "
              "|y|)")
    result = Exported(out, names, check)
    if not result.passed:
        return result
    if check is not None:
        print("check: ONNX matches PyTorch")
        latency = onnx_latency(out, sample_images(state, size, count=1).numpy(), repeats=repeats)
        print(f"latency: batch 1 through onnxruntime on this CPU: median {latency['median_ms']:.2f} ms (quartiles "
              f"{latency['p25_ms']:.2f}-{latency['p75_ms']:.2f}) over {repeats} calls")
    params = sum(p.numel() for p in wrapper.parameters())
    card = build_card(state, path, out, names, params, check, latency, chosen,
                      None if chosen is not None else study_of(path), note)
    result.card, result.card_files = card, write_card(card, out)
    print(f"card: {result.card_files[0]}\n      {result.card_files[1]}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.checkpoint is None) == (args.best is None):
        raise UsageError("give either a CHECKPOINT or --best STORAGE/NAME (not both)")
    if (args.method is not None or args.fold is not None) and not args.best:
        raise UsageError("--method and --fold choose among a study's models: use them with --best STORAGE/NAME")
    if args.latency_repeats < 1:
        raise UsageError(f"--latency-repeats {args.latency_repeats} must be at least 1")
    for module in ("onnx", "onnxscript"):
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"ONNX export needs the '{module}' package: pip install onnx onnxscript onnxruntime")
    chosen = None
    if args.best:
        from study.modelcard.choice import chosen_model

        chosen = chosen_model(args.best, args.method, args.fold)
        fold = f", fold {chosen.fold}" if chosen.fold is not None else ""
        print(f"chosen model: {chosen.method} re-run {chosen.trial_id} (seed {chosen.seed}, epoch {chosen.epoch}"
              f"{fold}): {chosen.rule}")
        path = chosen.checkpoint
    else:
        path = Path(args.checkpoint).expanduser()
    state = load_checkpoint(path)
    out = Path(args.onnx).expanduser().resolve()
    result = export_with_card(state, path, out, chosen, args.imgsz, args.atol, args.rtol, args.opset,
                              args.latency_repeats)
    if not result.passed:
        failed = [k for k, ok in result.check["ok"].items() if not ok]
        print(f"error: the ONNX {', '.join(failed)} differ from PyTorch beyond the tolerance; do not deploy this "
              "file (try another --opset)", file=sys.stderr)
        return 1
    if chosen is not None:  # the weights beside their ONNX file and card: one folder holds the model
        copied = out.with_suffix(".pt")
        with atomic_path(copied) as tmp:
            shutil.copyfile(path, tmp)
        print(f"checkpoint: {copied} (copied from {chosen.study_dir.name})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
