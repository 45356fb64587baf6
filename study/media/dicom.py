"""DICOM in: what an echo machine or a PACS exports (pydicom 3).

A file is DICOM when its name ends in ``.dcm`` or it carries the ``DICM`` magic at byte 128 (PACS
exports often have no suffix at all). Single-frame images and multi-frame cine loops are read frame
by frame as RGB: uncompressed, RLE and JPEG Baseline (YBR_FULL_422, the common echo export) with
pydicom alone -- pydicom decodes that JPEG through Pillow, which already returns RGB, so nothing here
converts colour a second time -- and the other compressed syntaxes (JPEG-LS, JPEG 2000, lossless
JPEG) with the optional ``[dicom]`` extra (pylibjpeg and its plugins).

Only the UIDs (study, series, SOP instance) and the frame timing are taken from the header: no
identifying field (patient name, ID, birth date, ...) is read into anything this tool writes. Text
burned into the pixels by the machine is part of the image and is copied as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from study.errors import UsageError

SUFFIX = ".dcm"
MAGIC, MAGIC_OFFSET = b"DICM", 128
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
EXTRA_HINT = 'pip install -e ".[dicom]" (pylibjpeg and its plugins)'


class NotAnImage(UsageError):
    """A DICOM that holds no image (a DICOMDIR, a structured report, ...): left out of a folder quietly."""


@dataclass(frozen=True)
class DicomHeader:
    """What this tool reads from a header: nothing that identifies a patient."""

    frames: int
    rate: Fraction | None  # frames per second when the header states it
    study_uid: str
    series_uid: str
    sop_uid: str


def is_dicom(path: Path) -> bool:
    """``.dcm`` suffix, or the ``DICM`` magic at byte 128 (a file too short or unreadable has none)."""
    if path.suffix.lower() == SUFFIX:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(MAGIC_OFFSET)
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _dataset(path: Path):  # -> pydicom.Dataset without its pixels
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=False, defer_size=1024, force=False)
    except InvalidDicomError:
        raise UsageError(f"{path}: not a DICOM file (no 'DICM' header); export it from the scanner or PACS "
                         "again, or give it its real suffix") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError) as err:
        raise UsageError(f"{path}: cannot read the DICOM header ({_why(err)})") from None


def _why(err: BaseException) -> str:
    """An exception's first line (pydicom's messages run over several)."""
    return (str(err).splitlines() or [type(err).__name__])[0]


def read_header(path: Path) -> DicomHeader:
    """The frame count, frame rate and UIDs of an image DICOM; :class:`NotAnImage` for a DICOMDIR or an
    object without pixel data, :class:`UsageError` for an unreadable file or a syntax no decoder here reads."""
    ds = _dataset(path)
    sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        raise NotAnImage(f"{path}: a DICOMDIR (an index of other files); give the folder of the files it lists")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NotAnImage(f"{path}: a DICOM without pixel data (SOP class {sop_class or 'unknown'}); nothing to predict")
    _check_decoder(path, ds)
    return DicomHeader(frames=int(ds.get("NumberOfFrames", 1) or 1), rate=frame_rate(ds),
                       study_uid=str(ds.get("StudyInstanceUID", "")), series_uid=str(ds.get("SeriesInstanceUID", "")),
                       sop_uid=str(ds.get("SOPInstanceUID", "")))


def _check_decoder(path: Path, ds) -> None:
    from pydicom.pixels.decoders.base import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        decoder = get_decoder(syntax)
    except (NotImplementedError, ValueError):
        raise UsageError(f"{path}: pixel data in transfer syntax {syntax} ({getattr(syntax, 'name', '?')}), "
                         "which pydicom cannot decode; export the clip uncompressed or as JPEG Baseline") from None
    if not decoder.is_available:
        raise UsageError(f"{path}: its pixel data is {syntax.name}, which needs a decoder plugin: {EXTRA_HINT}")


def frame_rate(ds) -> Fraction | None:
    """Frames per second from the header: FrameTime (ms per frame), else CineRate, else
    RecommendedDisplayFrameRate; None when it states none of them (or only nonsense)."""
    for key, to_rate in (("FrameTime", lambda v: 1000.0 / v), ("CineRate", float),
                         ("RecommendedDisplayFrameRate", float)):
        value = ds.get(key)
        try:
            rate = to_rate(float(value)) if value not in (None, "") else None
        except (TypeError, ValueError, ZeroDivisionError):
            rate = None
        if rate is not None and 0 < rate <= 1000:
            return Fraction(rate).limit_denominator(1000)
    return None


def read_dicom_frames(path: Path) -> Iterator[Image.Image]:
    """The frames of an image DICOM as RGB PIL images, one at a time (a long loop is never held whole)."""
    from pydicom.pixels import iter_pixels

    ds = _dataset(path)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    try:
        for array in iter_pixels(path, as_rgb=True):  # YBR_FULL(_422) -> RGB once; a JPEG's RGB stays as it is
            yield to_rgb_image(array, ds, photometric)
    except (RuntimeError, ValueError, NotImplementedError, OSError, EOFError, AttributeError, KeyError) as err:
        raise UsageError(f"{path}: cannot decode its pixel data ({_why(err)})") from None


def to_rgb_image(array: np.ndarray, ds, photometric: str) -> Image.Image:
    """One decoded frame, (H, W) or (H, W, 3), as an 8-bit RGB image: palette colour through its
    lookup table, MONOCHROME1 inverted (its 0 is white), more than 8 stored bits scaled down."""
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        array = apply_color_lut(array, ds)  # (H, W, 3), 8 or 16 bits as the table is
    if array.dtype != np.uint8:
        bits = 16 if photometric == "PALETTE COLOR" else int(ds.get("BitsStored", 8 * array.itemsize))
        low = float(array.min()) if array.dtype.kind == "i" else 0.0  # signed: shift to start at 0
        array = np.clip((array.astype(np.float64) - low) * 255.0 / (2.0 ** bits - 1.0) + 0.5, 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        array = 255 - array
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    return Image.fromarray(np.ascontiguousarray(array[..., :3]), "RGB")
