"""``python -m study.predict CHECKPOINT SOURCE --out DIR``: apply a trained model to images, videos and DICOMs.

SOURCE is an image, a video (echo clips: read with PyAV, frame by frame), a DICOM (single frame or a
cine loop; study/media/dicom.py) or a folder of them. Each frame is letterboxed to the checkpoint's image
size exactly as in training (an image file decoded as the training data is: trainables/data/decode.py,
``letterbox_file``), run through the model in batches, and the detections (class-aware NMS at the
checkpoint's IoU threshold and max_det, boxes scoring above ``--conf``) are mapped back to the
frame's original pixels. Written to DIR:

  ``<stem>.jpg`` / ``<stem>.mp4``  annotated copies (boxes with class and confidence, the frame's view and
                                   its probability; a clip -- a video or a cine loop -- keeps its frame
                                   rate, a DICOM's from its header, and shows the clip's view too)
  ``predictions.parquet``          one row per box: source, frame, patient, study_uid, series_uid, sop_uid,
                                   x1, y1, x2, y2 (original pixels), class, class_id, confidence, view,
                                   view_prob. A frame without a box still has one row (box columns null)
                                   carrying its view. Columns a single-task model has no head for
                                   (det_only: view; cls_only: boxes) are null.
  ``clips.parquet``                one row per clip: source, patient, frames, view, view_prob -- the view whose
                                   probability averaged over the clip's frames is highest, and that mean.

A DICOM is named in all of these by keyed pseudonyms (study/media/deid.py): ``source`` and its
annotated copy's stem are ``<patient>-<clip>``, ``patient`` the keyed pseudonym of its PatientID, the
three UID columns ``2.25.`` pseudonyms of its Study, Series and SOP Instance UIDs (rows of one study
still join); ``--keep-uids`` writes the original UIDs and paths instead, for joining back to the
archive inside the hospital. Images and videos carry their paths and null patient and UIDs. No
identifying DICOM field (patient name, ID, birth date, dates, ...) is written anywhere; text burned
into the pixels is copied as it is. The ``dicom:`` line on stderr says what was used and written.

A folder is walked recursively, as a PACS exports it (PATIENT/STUDY/SERIES/IM0001, a DICOM found by its
``DICM`` magic whatever its name, a DICOMDIR's listed files read; study/media/sources.py). In a folder, a
file that cannot be read is left out with a warning line naming it by its pseudonym when its header was
read (a DICOM without pixels with a note), and the run ends with one line counting what was read and
what was skipped, by reason (``--list-skipped`` names them); a single SOURCE that cannot be read is an
error. ``--mask`` blanks burned-in text in every frame before the model sees it and in every annotated
copy. The Parquet files' metadata and the annotated copies of DICOMs record the pseudonym key's
fingerprint. Images are used as stored (no EXIF rotation), as in training.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study.cli import CHECKPOINT_HELP, ArgumentParser, run_cli
from study.errors import UsageError
from study.media.deid import Naming
from study.media.dicom import UNDECODABLE, DicomProblem, NotAnImage, is_dicomdir, read_header
from study.media.frames_io import (
    CLIP_SCHEMA,
    DEFAULT_RATE,
    IMAGE_EXTS,
    SCHEMA,
    VIDEO_EXTS,
    Frame,
    Progress,
    VideoWriter,
    annotate,
    clip_info,
    is_clip,
    read_frames,
    write_jpeg,
    write_predictions,
)
from study.media.mask import MASK_HELP, Mask, blank_letterboxed, parse_masks
from study.media.sources import LIST_HELP, Tally, find_sources
from study.store.checkpoints import load_checkpoint, restore_model
from trainables.data.decode import boxes_from_letterbox, letterbox, letterbox_file
from trainables.data.provenance import key_comment
from trainables.postprocess import postprocess
from trainables.precision import Numerics, checkpoint_numerics
from trainables.wording import counted

BATCH = 16


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("source", help="an image, a video, a DICOM (one frame or a cine loop), or a folder of them "
                                   "(walked recursively, as a PACS exports it)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the annotated files and predictions.parquet")
    p.add_argument("--conf", type=float, default=0.25,
                   help="keep boxes scoring above this (default 0.25; the checkpoint's own train.conf_thres, "
                        "0.001, is meant for computing mAP and would draw every faint candidate)")
    p.add_argument("--batch", type=int, default=BATCH, help=f"frames per forward pass (default {BATCH})")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                   help="run the model in fp32 or bf16 autocast (default: the precision it trained at)")
    p.add_argument("--key-file", default=None, metavar="FILE",
                   help="the DICOM pseudonym key (default: this installation's, created on first use; "
                        "docs/dicom-and-privacy.md)")
    p.add_argument("--keep-uids", action="store_true",
                   help="write DICOMs' original Study/Series/SOP Instance UIDs and file paths instead of "
                        "pseudonyms: the output then identifies studies (for use inside the hospital only)")
    p.add_argument("--mask", action="append", metavar="X0,Y0,X1,Y1", help=MASK_HELP)
    p.add_argument("--list-skipped", action="store_true", help=LIST_HELP)
    return p


def model_input(frame: Frame, imgsz: int, masks: tuple[Mask, ...] = ()) -> tuple[np.ndarray, tuple[int, ...]]:
    """``frame`` letterboxed ((3, S, S) uint8, geometry) as training letterboxes it: an image file read
    again the way the training data is decoded (``letterbox_file``: a large JPEG at a reduced scale, whose
    pixels differ from the full decode ``frame.image`` holds for drawing; ``masks`` blanked on the
    letterbox), a video or DICOM frame from its pixels (already masked)."""
    if frame.source.suffix.lower() in IMAGE_EXTS:
        array, geometry = letterbox_file(frame.source, imgsz)
        return blank_letterboxed(array, masks, geometry, frame.image.width, frame.image.height), geometry
    return letterbox(frame.image, imgsz)


@torch.no_grad()
def predict_batch(model: Any, frames: list[Frame], imgsz: int, conf: float, iou: float, max_det: int,
                  numerics: Numerics, masks: tuple[Mask, ...] = ()) -> list[dict[str, Any]]:
    """Per frame: ``boxes`` (M, 4) xyxy original pixels, ``scores`` (M,), ``labels`` (M,) (None without a
    detector) and ``view`` index / ``view_prob`` (None without a classifier). Boxes whose centre lies on
    the letterbox padding are dropped; the rest are clipped to the frame."""
    letterboxed = [model_input(f, imgsz, masks) for f in frames]
    raw = torch.from_numpy(np.stack([a for a, _ in letterboxed]))  # (B, 3, S, S) uint8
    images = raw.to(numerics.device).float().div_(255.0)  # (B, 3, S, S) in [0, 1], as the engine feeds it
    with numerics.autocast():  # as the model trained (evaluate runs it so too)
        det_out, logits = model(numerics.images(images))  # L x (B, A, H, W, 5 + nc) or None; (B, V) or None
    dets = postprocess([d.float() for d in det_out], model.detect, conf, iou, max_det) \
        if det_out is not None else [None] * len(frames)
    probs = logits.float().softmax(1).cpu() if logits is not None else None  # (B, V)
    out = []
    for b, (frame, (_, geometry)) in enumerate(zip(frames, letterboxed, strict=True)):
        item: dict[str, Any] = {"boxes": None, "scores": None, "labels": None, "view": None, "view_prob": None,
                                "probs": None}
        if dets[b] is not None:
            boxes, scores, labels = (t.cpu().numpy() for t in dets[b])
            new_w, new_h, left, top = geometry
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2  # (M,) letterboxed pixels
            # a box centred on the grey padding is not an object of the image (clipped, it would be a sliver)
            inside = (cx >= left) & (cx <= left + new_w) & (cy >= top) & (cy <= top + new_h)
            boxes, scores, labels = boxes[inside], scores[inside], labels[inside]
            item.update(boxes=boxes_from_letterbox(boxes, geometry, frame.image.width, frame.image.height),
                        scores=scores.astype(np.float64), labels=labels.astype(np.int64))
        if probs is not None:
            p, v = probs[b].max(0)
            item.update(view=int(v), view_prob=float(p), probs=probs[b].numpy())  # probs: (V,)
        out.append(item)
    return out


def add_rows(columns: dict[str, list], frame: Frame, item: dict[str, Any], names: list[str],
             view_names: list[str], naming: Naming) -> None:
    """One row per box, or one box-less row when the frame has none (it still carries the view)."""
    view = view_names[item["view"]] if item["view"] is not None else None
    n = len(item["scores"]) if item["scores"] is not None else 0
    ids = _ids(frame, naming)
    for i in range(max(n, 1)):
        box = item["boxes"][i].tolist() if n else [None] * 4
        columns["frame"].append(frame.index)
        for key, value in zip(("source", "patient", "study_uid", "series_uid", "sop_uid"), ids, strict=True):
            columns[key].append(value)
        for key, v in zip(("x1", "y1", "x2", "y2"), box, strict=True):
            columns[key].append(v)
        columns["class_id"].append(int(item["labels"][i]) if n else None)
        columns["class"].append(names[int(item["labels"][i])] if n else None)
        columns["confidence"].append(float(item["scores"][i]) if n else None)
        columns["view"].append(view)
        columns["view_prob"].append(item["view_prob"])


def _ids(frame: Frame, naming: Naming) -> tuple[str, str | None, str | None, str | None, str | None]:
    """(source, patient, study_uid, series_uid, sop_uid) as written: a DICOM's pseudonyms (study/media/deid.py),
    an image's or video's path and nulls."""
    if frame.dicom is None:
        return str(frame.source), None, None, None, None
    w = naming.of(frame.source, frame.dicom)
    return w.source, w.patient, w.study_uid or None, w.series_uid or None, w.sop_uid or None


def drawn(frame: Frame, item: dict[str, Any], names: list[str], view_names: list[str],
          clip_view: str | None = None, masks: tuple[Mask, ...] = ()) -> Any:
    """The frame annotated with its boxes (``class confidence``), its view (``view probability``) and,
    for a clip, the clip's view (``clip: view probability``); ``masks`` blank over the drawing too."""
    n = 0 if item["labels"] is None else len(item["labels"])
    text = [f"{names[int(item['labels'][i])]} {item['scores'][i]:.2f}" for i in range(n)]
    view = f"{view_names[item['view']]} {item['view_prob']:.2f}" if item["view"] is not None else None
    return annotate(frame.image, item["boxes"] if n else np.zeros((0, 4)),
                    text, item["labels"] if n else np.zeros(0, np.int64), view, clip_view, masks)


def clip_view(items: list[dict[str, Any]]) -> tuple[int | None, float | None]:
    """A clip's view: the index whose probability averaged over its frames is highest, and that mean
    (None, None without a view head)."""
    probs = [item["probs"] for item in items if item["probs"] is not None]
    if not probs:
        return None, None
    mean = np.mean(np.stack(probs), axis=0)  # (V,)
    return int(mean.argmax()), float(mean.max())


class Sink:
    """Writes annotated frames: an image to ``<stem>.jpg``, a clip's frames into one ``<stem>.mp4``.

    A clip's view is known only after its last frame, so a clip's predictions are held until it ends,
    then its frames are decoded a second time and written with the clip's view on each (holding the
    decoded frames instead would take gigabytes for a long cine loop). ``clips`` collects the
    clips.parquet columns. An image's or video's copy keeps its folder below ``root`` (SOURCE); a DICOM's
    goes to ``out`` itself, named by its pseudonym (its folders may name the patient). ``masks``: blanked
    over every annotated frame."""

    def __init__(self, out: Path, files: list[Path], names: list[str], view_names: list[str],
                 naming: Naming, root: Path | None = None, masks: tuple[Mask, ...] = ()) -> None:
        ext = {f: ".mp4" if is_clip(f) else ".jpg" for f in files}
        stems = {f: out_stem(f, naming) for f in files}
        folder = {f: out / _below(f, root) if own else out for f, (_, own) in stems.items()}
        wanted = [folder[f] / (stem + ext[f]) for f, (stem, _) in stems.items()]
        self.targets: dict[Path, Path] = {}
        for k, f in enumerate(files):  # a.png and a.jpg would both give a.jpg: keep their full names
            stem, own = stems[f]
            unique = wanted.count(folder[f] / (stem + ext[f])) == 1
            self.targets[f] = folder[f] / (stem + ext[f] if unique else f.name + ext[f] if own
                                           else f"{stem}_{k}{ext[f]}")
        clash = [f for f, t in self.targets.items() if t.resolve() in {g.resolve() for g in files}]
        if clash:
            raise UsageError(f"--out {out}: writing there would overwrite the input {clash[0]}; choose another folder")
        self.naming, self.masks = naming, masks
        self.names, self.view_names = names, view_names
        self.clip_source: Path | None = None
        self.clip_items: list[dict[str, Any]] = []
        self.clips: dict[str, list] = {k: [] for k in CLIP_SCHEMA.names}
        self.images = self.videos = 0

    def put(self, frame: Frame, item: dict[str, Any]) -> None:
        if not frame.is_video:
            write_jpeg(drawn(frame, item, self.names, self.view_names, masks=self.masks), self.targets[frame.source],
                       self.comment(frame.source))
            self.images += 1
            return
        if frame.source != self.clip_source:
            self.close()
            self.clip_source = frame.source
        self.clip_items.append(item)

    def close(self, keep: bool = True) -> None:
        """End the current clip: written with its view when ``keep``, dropped otherwise."""
        source, items = self.clip_source, self.clip_items
        self.clip_source, self.clip_items = None, []
        if source is None or not keep:
            return
        view, prob = clip_view(items)
        header = read_header(source) if source.suffix.lower() not in VIDEO_EXTS else None
        written = self.naming.of(source, header) if header is not None else None
        name = written.source if written is not None else str(source)
        self.clips["source"].append(name)
        self.clips["patient"].append(written.patient if written is not None else None)
        self.clips["frames"].append(len(items))
        self.clips["view"].append(self.view_names[view] if view is not None else None)
        self.clips["view_prob"].append(prob)
        label = f"clip: {self.view_names[view]} {prob:.2f}" if view is not None else None
        rate = clip_info(source)[1]
        if rate is None:
            print(f"note: {name} states no frame rate; its annotated video plays at {DEFAULT_RATE} fps",
                  file=sys.stderr)
        comment = self.comment(source)
        video = VideoWriter(self.targets[source], rate or DEFAULT_RATE, comment.decode() if comment else None)
        try:  # the same frames, again; no more than were predicted (a loop cut short fails after them)
            again = islice(read_frames(source, quiet=True, masks=self.masks), len(items))
            for frame, item in zip(again, items, strict=False):
                video.write(drawn(frame, item, self.names, self.view_names, label, self.masks))
        except BaseException:
            video.close(keep=False)
            raise
        video.close()
        self.videos += 1

    def comment(self, source: Path) -> bytes | None:
        """The pseudonym key's fingerprint, for the annotated copy of a DICOM (named by its pseudonym)."""
        if source.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS or self.naming.fingerprint is None:
            return None
        return key_comment(self.naming.fingerprint)


def _below(path: Path, root: Path | None) -> Path:
    """The folder of ``path`` below ``root`` ('.' when it lies elsewhere or there is no root)."""
    if root is None:
        return Path()
    try:
        return path.parent.resolve().relative_to(root.resolve())
    except ValueError:
        return Path()


def out_stem(path: Path, naming: Naming) -> tuple[str, bool]:
    """(the stem of a file's annotated copy, whether it is the file's own): a DICOM's pseudonymous
    ``<patient>-<clip>`` (its own stem with --keep-uids), an image's or video's own stem. A DICOM whose
    header cannot be read keeps its stem: it is left out and nothing is written for it. With --keep-uids a
    DICOM's copy keeps its own stem (and folder), as the user asked for the paths."""
    if path.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS or naming.keep_uids:
        return path.stem, True
    try:
        header = read_header(path)
    except UsageError:
        return path.stem, True
    return naming.of(path, header).name, False


def all_frames(files: list[Path], strict: bool, skipped: list[Path], not_images: list[Path],
               naming: Naming, tally: Tally, masks: tuple[Mask, ...] = ()) -> Iterator[Frame]:
    """Every frame of every file; in a folder (not ``strict``) an unreadable file is warned about and left
    out, a DICOM without an image (a report, no pixel data) noted and left out -- a DICOM whose header was
    read named by its pseudonym, one whose header cannot be read counted in ``tally`` only (its path is
    its only name: --list-skipped)."""
    for path in files:
        done = 0
        try:
            for frame in read_frames(path, naming=naming, masks=masks):
                if frame.index == 0 and frame.dicom is not None:
                    tally.dicom(path, frame.dicom)
                elif frame.index == 0:
                    tally.other(path)
                done += 1
                yield frame
        except DicomProblem as err:
            name = naming.name_of(err)
            if strict:
                raise UsageError(f"{name or path}: {err.why}") from None
            if done:  # a loop cut short: its first frames are predicted
                print(f"warning: {name}: frames 0 to {done - 1} read, then {err.why}", file=sys.stderr)
                continue
            tally.problem(err)
            (not_images if isinstance(err, NotAnImage) else skipped).append(path)
            if name is not None:
                kind, verb = ("note", "skipped") if isinstance(err, NotAnImage) else ("warning", "left out")
                print(f"{kind}: {name}: {err.why}; {verb}", file=sys.stderr)
        except UsageError as err:  # an image or a video: no header, named by its path as given
            if strict:
                raise
            print(f"warning: {err}; left out", file=sys.stderr)
            tally.skip(UNDECODABLE, tally.relative(path))
            skipped.append(path)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0.0 <= args.conf < 1.0 or args.batch < 1:
        raise UsageError("--conf must lie in [0, 1) and --batch be at least 1")
    from trainables.engine import resolve_device

    source, out = Path(args.source).expanduser(), Path(args.out).expanduser()
    found = find_sources(source)  # checked before loading the model: a bad SOURCE fails fast
    files, masks = found.files, parse_masks(args.mask)
    path = Path(args.checkpoint).expanduser()
    state = load_checkpoint(path)
    model, cfg = restore_model(state, path)
    names, view_names = list(state.get("names", [])), list(state.get("view_names", []))
    device = resolve_device(args.device)
    numerics = checkpoint_numerics(state, cfg.train, device, args.precision)
    model = numerics.module(model.to(device))
    naming = Naming(Path(args.key_file).expanduser() if args.key_file else None, args.keep_uids)
    sink = Sink(out, files, names, view_names, naming, found.root if source.is_dir() else None, masks)
    tally = Tally(found, naming, masks)
    columns: dict[str, list] = {k: [] for k in SCHEMA.names}
    total = sum(clip_info(f)[0] for f in files)  # 0 for a file that states no count: the bar shows no total
    bar, skipped, not_images, frames_done, boxes = Progress(total), [], [], 0, 0
    strict = source.is_file() and not is_dicomdir(source)  # one file: its problem is the error
    stream = all_frames(files, strict, skipped, not_images, naming, tally, masks)
    try:
        while batch := list(islice(stream, args.batch)):
            items = predict_batch(model, batch, cfg.data.imgsz, args.conf, cfg.train.iou_thres, cfg.train.max_det,
                                  numerics, masks)
            for frame, item in zip(batch, items, strict=True):
                add_rows(columns, frame, item, names, view_names, naming)
                sink.put(frame, item)
                boxes += 0 if item["labels"] is None else len(item["labels"])
            frames_done += len(batch)
            bar.update(len(batch))
    except BaseException:
        sink.close(keep=False)
        raise
    sink.close()
    if frames_done == 0:
        tally.finish(list_skipped=False)
        raise UsageError(f"{source}: none of its {counted(len(files), 'file')} could be read")
    bar.finish(len(files) - len(skipped) - len(not_images))
    if naming.used:
        print(naming.audit(masks=masks), file=sys.stderr)
        if args.keep_uids:
            print("warning: --keep-uids: predictions.parquet and clips.parquet carry the DICOMs' original UIDs and "
                  "paths, so this output identifies studies; keep it inside the hospital", file=sys.stderr)
    key = {"mtl_study.pseudonym_key_fingerprint": naming.fingerprint} if naming.fingerprint else None
    write_predictions(columns, out / "predictions.parquet", metadata=key)
    write_predictions(sink.clips, out / "clips.parquet", CLIP_SCHEMA, metadata=key)
    print(f"wrote {counted(sink.images, 'annotated image')} and {counted(sink.videos, 'video')} to {out}")
    n_clips = len(sink.clips["source"])
    print(f"wrote {out / 'clips.parquet'}: {counted(n_clips, 'clip')}, the view averaged over each "
          "clip's frames")
    print(f"wrote {out / 'predictions.parquet'}: {counted(len(columns['source']), 'row')}, "
          f"{counted(boxes, 'box')} on {counted(frames_done, 'frame')} "
          f"(conf > {args.conf}, NMS IoU {cfg.train.iou_thres}, {cfg.arch} model at {cfg.data.imgsz} px)")
    if skipped:
        print(f"left out {counted(len(skipped), 'unreadable file')} (counted below)", flush=True)
    tally.finish(args.list_skipped)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
