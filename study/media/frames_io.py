"""What ``study.predict`` reads and writes: images, videos (PyAV) and DICOMs (study/media/dicom.py), annotated
copies, the Parquet tables.

Frames come out of :func:`read_frames` as RGB PIL images in file order (a video's or a cine loop's
in decode order, numbered from 0); ``python -m study.data frames`` reads them the same way.
Annotated copies are written whole or not at all (``study.store.atomic``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from study.errors import UsageError
from study.media.deid import Naming
from study.media.dicom import DicomHeader, read_dicom_frames, read_header
from study.media.mask import Mask, below, blank
from study.media.sources import IMAGE_EXTS, VIDEO_EXTS, find_sources, is_supported  # noqa: F401 (re-exported)
from study.store.atomic import atomic_path
from trainables.wording import counted

DEFAULT_RATE = Fraction(25)  # frames per second of a clip whose file states none
SCHEMA = pa.schema([("source", pa.string()), ("frame", pa.int64()), ("patient", pa.string()),
                    ("study_uid", pa.string()), ("series_uid", pa.string()), ("sop_uid", pa.string()),
                    ("x1", pa.float64()), ("y1", pa.float64()), ("x2", pa.float64()), ("y2", pa.float64()),
                    ("class", pa.string()), ("class_id", pa.int64()), ("confidence", pa.float64()),
                    ("view", pa.string()), ("view_prob", pa.float64())])
CLIP_SCHEMA = pa.schema([("source", pa.string()), ("patient", pa.string()), ("frames", pa.int64()),
                         ("view", pa.string()), ("view_prob", pa.float64())])
COLOURS = [(255, 56, 56), (72, 249, 10), (0, 194, 255), (255, 157, 151), (207, 210, 49), (132, 56, 255)]


@dataclass
class Frame:
    source: Path
    index: int  # 0 for an image, the frame number in a video or cine loop
    image: Image.Image  # RGB, original size
    is_video: bool  # a clip: a video or a multi-frame DICOM (annotated as an MP4)
    dicom: DicomHeader | None = None  # its UIDs and timing, for a DICOM


def list_sources(source: Path) -> list[Path]:
    """The image/video/DICOM files SOURCE names: itself, a DICOMDIR's files, or a folder's supported files,
    recursively (study/media/sources.py, whose :func:`find_sources` also says what it left out)."""
    return find_sources(source).files


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16"):  # 16-bit grey: scale to 8 bits as the training letterbox does
        image = Image.fromarray((np.asarray(image, np.float32) / 257.0 + 0.5).astype(np.uint8))
    return image.convert("RGB")


def video_info(path: Path) -> tuple[int, Fraction]:
    """(frame count as the container states it, 0 if unknown; frame rate, 25 if unknown). A file PyAV
    cannot open gives (0, 25) here: :func:`read_frames` reports it."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return int(stream.frames or 0), Fraction(stream.average_rate or stream.guessed_rate or 25)
    except (av.FFmpegError, OSError, IndexError):
        return 0, Fraction(25)


def clip_info(path: Path) -> tuple[int, Fraction | None]:
    """(frames the file states, 0 if unknown; frames per second it states, None if none) of a video or
    a DICOM; (1, None) for an image. A file that cannot be read gives (0, None): :func:`read_frames`
    reports it."""
    if path.suffix.lower() in IMAGE_EXTS:
        return 1, None
    if path.suffix.lower() in VIDEO_EXTS:
        return video_info(path)
    try:
        header = read_header(path)
    except UsageError:
        return 0, None
    return header.frames, header.rate


def is_clip(path: Path) -> bool:
    """A video, or a DICOM of more than one frame (a cine loop): annotated as an MP4 and one clips.parquet row."""
    return path.suffix.lower() in VIDEO_EXTS or (path.suffix.lower() not in IMAGE_EXTS and clip_info(path)[0] > 1)


def read_frames(path: Path, quiet: bool = False, naming: Naming | None = None,
                masks: tuple[Mask, ...] = ()) -> Iterator[Frame]:
    """The frames of one image, video or DICOM file; UsageError (one line) when it cannot be read
    (:class:`study.media.dicom.DicomProblem` for a DICOM, :class:`study.media.dicom.NotAnImage` when it holds
    no image). ``quiet``: no warning when fewer frames decode than the file states (for a second reading of
    a file already warned about); ``naming``: how that warning names a DICOM (its pseudonym; else its
    path); ``masks``: rectangles blanked in every frame (``--mask``, study/media/mask.py)."""
    if path.suffix.lower() not in IMAGE_EXTS | VIDEO_EXTS:  # is_supported: a DICOM
        header = read_header(path)
        n = 0
        for n, image in enumerate(read_dicom_frames(path, header), start=1):
            yield Frame(path, n - 1, blank(image, masks), header.frames > 1, header)
        if n < header.frames and not quiet:
            name = naming.of(path, header).source if naming is not None else path
            print(f"warning: {name}: its header states {counted(header.frames, 'frame')}, {n} could be decoded",
                  file=sys.stderr)
        return
    if path.suffix.lower() in IMAGE_EXTS:
        try:
            with Image.open(path) as im:
                image = to_rgb(im)  # decodes fully inside the try, so a truncated file fails here
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
            raise UsageError(f"{path}: cannot decode the image ({str(err) or type(err).__name__})") from None
        yield Frame(path, 0, blank(image, masks), False)
        return
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UsageError(f"{path}: no video stream in this file")
            stated, n = container.streams.video[0].frames, 0
            for n, frame in enumerate(container.decode(video=0), start=1):
                yield Frame(path, n - 1, blank(frame.to_image(), masks), True)
            if stated and n < stated and not quiet:  # FFmpeg ends a truncated file quietly, as if it were complete
                print(f"warning: {path}: its header states {counted(stated, 'frame')}, {n} could be decoded "
                      "(a truncated file?)", file=sys.stderr)
    except (av.FFmpegError, OSError) as err:
        why = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]
        raise UsageError(f"{path}: cannot decode the video ({why})") from None


class VideoWriter:
    """An H.264 (or MPEG-4 Part 2 where libx264 is missing) MP4 at ``rate``; renamed into place on close."""

    def __init__(self, path: Path, rate: Fraction, comment: str | None = None) -> None:
        import av

        self.path, self.rate, self.stream = path, rate, None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.container = av.open(tmp, "w", format="mp4")  # the .tmp name says nothing of the format
        if comment:  # the pseudonym key's fingerprint (study/media/export_frames.py)
            self.container.metadata["comment"] = comment

    def write(self, image: Image.Image) -> None:
        import av

        if image.width % 2 or image.height % 2:  # yuv420p needs even sides: pad one black pixel
            padded = Image.new("RGB", (image.width + image.width % 2, image.height + image.height % 2))
            padded.paste(image)
            image = padded
        if self.stream is None:
            try:
                av.Codec("libx264", "w")
                codec = "libx264"
            except Exception:  # an FFmpeg build without the GPL encoder
                codec = "mpeg4"
            self.stream = self.container.add_stream(codec, rate=self.rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = image.width, image.height, "yuv420p"
        for packet in self.stream.encode(av.VideoFrame.from_image(image)):
            self.container.mux(packet)

    def close(self, keep: bool = True) -> None:
        if keep and self.stream is not None:
            for packet in self.stream.encode():  # flush the encoder's delayed frames
                self.container.mux(packet)
        self.container.close()
        if keep and self.stream is not None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()


def annotate(image: Image.Image, boxes: np.ndarray, labels: list[str], class_ids: np.ndarray,
             view: str | None, clip_view: str | None = None, masks: tuple[Mask, ...] = ()) -> Image.Image:
    """A copy of ``image`` with (M, 4) original-pixel xyxy ``boxes`` drawn and labelled, the frame's view
    on top and, for a clip, the clip's view below it. ``masks``: blanked again over the drawing (a box
    reaching into a masked band is cut there), the view drawn below a masked top band."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(out.size) / 250))
    font = _font(max(10, round(min(out.size) / 30)))
    for box, label, cid in zip(boxes, labels, class_ids, strict=True):
        colour = COLOURS[int(cid) % len(COLOURS)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), label, font=font)
        ty = y1 - (ty2 - ty1) - 2 if y1 - (ty2 - ty1) - 2 >= 0 else y1  # above the box when there is room
        draw.rectangle((x1, ty, x1 + tx2 - tx1 + 4, ty + ty2 - ty1 + 2), fill=colour)
        draw.text((x1 + 2, ty - (ty1 - y1)), label, fill=(255, 255, 255), font=font)
    y = below(masks, out.width, out.height, 4, 4)
    if view is not None:
        draw.text((4, y), view, fill=(255, 255, 0), font=font, stroke_width=max(1, line), stroke_fill=(0, 0, 0))
    if clip_view is not None:
        _, top, _, bottom = draw.textbbox((4, y), "Ay", font=font)
        draw.text((4, y + (bottom - top) + 2 * line + 2), clip_view, fill=(0, 255, 255), font=font,
                  stroke_width=max(1, line), stroke_fill=(0, 0, 0))
    return blank(out, masks)


def write_jpeg(image: Image.Image, path: Path, comment: bytes | None = None) -> None:
    """``image`` as a JPEG (quality 92); ``comment``: a COM segment (the pseudonym key's fingerprint)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=92, **({"comment": comment} if comment else {}))


def write_predictions(columns: dict[str, list], path: Path, schema: pa.Schema = SCHEMA,
                      metadata: dict[str, str] | None = None) -> None:
    """The table's columns as ``schema`` (``SCHEMA``: one row per box, or per frame without a box;
    ``CLIP_SCHEMA``: one row per clip); written atomically. ``metadata``: the file's key-value metadata
    (the pseudonym key's fingerprint)."""
    table = pa.Table.from_pydict({name: columns[name] for name in schema.names}, schema=schema)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class Progress:
    """``predict: 120/1196 frames`` redrawn on stderr twice a second in a terminal; always a final line."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.redraw = total, 0, sys.stderr.isatty()
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.redraw and now - self.last > 0.5:
            self.last = now
            shown = f"{self.done}/{self.total} frames" if self.total else counted(self.done, "frame")
            print(f"\rpredict: {shown}", end="", file=sys.stderr, flush=True)

    def finish(self, files: int) -> None:
        end = "\r" if self.redraw else ""
        print(f"{end}predict: {counted(self.done, 'frame')} from {counted(files, 'file')} in "
              f"{time.monotonic() - self.start:.1f} s", file=sys.stderr)
