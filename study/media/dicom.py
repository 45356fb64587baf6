"""DICOM in: what an echo machine or a PACS exports (pydicom 3).

A file is DICOM when its name ends in ``.dcm`` or it carries the ``DICM`` magic at byte 128 (PACS
exports often have no suffix at all). Single-frame images and multi-frame cine loops are read frame
by frame as RGB: uncompressed, RLE and JPEG Baseline (YBR_FULL_422, the common echo export) with
pydicom alone, the other compressed syntaxes (JPEG-LS, JPEG 2000, lossless JPEG) with the optional
``[dicom]`` extra (pylibjpeg and its plugins).

Pixels go through pydicom's own pipeline, so palette, modality and VOI transforms follow the standard
(PS3.3 C.7.6.3, C.11): colour converted to RGB once (``iter_pixels(as_rgb=True)``, which calls
``convert_color_space``; a JPEG Baseline frame that Pillow already returned as RGB is not converted a
second time), PALETTE COLOR through ``apply_color_lut`` at its table's bit depth, greyscale through
``apply_modality_lut`` then ``apply_voi_lut`` (the file's first window or VOI LUT). A loop is mapped to
8 bits by one window taken from the header -- the VOI output range, else the range the stored bit
depth allows after the modality transform -- never by a frame's own minimum and maximum, so one stored
value is one grey level in every frame. MONOCHROME1 is inverted (its minimum is white).

From the header this module takes the identity (:data:`IDENTITY`: held in memory for the keyed
pseudonyms of study/media/pseudonyms.py, never written as it is), the frame count and timing, and the
pixel description (:data:`PIXEL_ATTRIBUTES`). Text burned into the pixels is part of the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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


IDENTITY = ("PatientID", "IssuerOfPatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
TIMING = ("NumberOfFrames", "FrameTime", "CineRate", "RecommendedDisplayFrameRate")
PIXEL_ATTRIBUTES = ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration",
                    "BitsAllocated", "BitsStored", "PixelRepresentation", "palette colour tables",
                    "RescaleSlope/Intercept", "ModalityLUTSequence", "WindowCenter/Width", "VOILUTFunction",
                    "VOILUTSequence")


@dataclass(frozen=True)
class DicomHeader:
    """What this tool takes from a header. The identity fields are originals, held only to be pseudonymised
    (study/media/deid.py): kept out of ``repr`` so that no message or traceback prints them."""

    frames: int
    rate: Fraction | None  # frames per second when the header states it
    study_uid: str = field(repr=False)
    series_uid: str = field(repr=False)
    sop_uid: str = field(repr=False)
    patient_id: str = field(default="", repr=False)
    issuer: str = field(default="", repr=False)  # IssuerOfPatientID: qualifies PatientID


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
                       sop_uid=str(ds.get("SOPInstanceUID", "")), patient_id=_text(ds, "PatientID"),
                       issuer=_text(ds, "IssuerOfPatientID"))


def _text(ds, keyword: str) -> str:
    """A text attribute without DICOM's space padding; '' when absent or empty."""
    return str(ds.get(keyword, "") or "").strip()


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
    try:
        for array in iter_pixels(path, as_rgb=True):  # YBR_FULL(_422) -> RGB once; a JPEG's RGB stays as it is
            yield Image.fromarray(to_8bit(array, ds), "RGB")
    except (RuntimeError, ValueError, NotImplementedError, OSError, EOFError, AttributeError, KeyError,
            TypeError, IndexError) as err:
        raise UsageError(f"{path}: cannot decode its pixel data ({_why(err)})") from None


def to_8bit(array: np.ndarray, ds) -> np.ndarray:
    """One decoded frame -- (H, W) stored values or palette indices, or (H, W, 3) RGB -- as (H, W, 3) uint8
    RGB for display, by a mapping that depends on the header alone (the same for every frame of a loop)."""
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])  # 8 or 16 bits per entry, however they are stored
        return scale(apply_color_lut(array, ds)[..., :3], 0.0, 2.0 ** bits - 1)  # (H, W, 3); an alpha table dropped
    if array.ndim == 3:  # RGB (YBR already converted): as many levels as the stored bits give
        return scale(array[..., :3], 0.0, 2.0 ** int(ds.get("BitsStored", 8 * array.itemsize)) - 1)
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(array, ds)  # (H, W): stored values to modality values (rescale or LUT)
    low, high = modality_range(ds)
    if "VOILUTSequence" in ds:  # a VOI LUT's output is 0 .. 2^bits - 1 of its own descriptor
        values = apply_voi_lut(values, ds, index=0)
        low, high = 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    elif "WindowCenter" in ds and "WindowWidth" in ds:  # a window's output spans the modality range
        values = apply_voi_lut(values, ds, index=0)
    grey = scale(values, low, high)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return np.repeat(grey[..., None], 3, axis=2)


def modality_range(ds) -> tuple[float, float]:
    """(lowest, highest) modality value the stored bit depth allows, after the rescale or modality LUT;
    the output range of a window as pydicom's ``apply_windowing`` (PS3.3 C.11.2.1.2) computes it."""
    if "ModalityLUTSequence" in ds:  # its output is unsigned, 0 .. 2^bits - 1
        return 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    bits = int(ds.get("BitsStored", 8))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        low, high = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    else:
        low, high = 0.0, 2.0 ** bits - 1
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))  # a negative slope flips them
    return low, high


def scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` mapped linearly from [low, high] to uint8 [0, 255], rounding half up, clipped."""
    if values.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        return np.ascontiguousarray(values)
    out = np.floor((values.astype(np.float64) - low) * (255.0 / (high - low)) + 0.5)
    return np.clip(out, 0, 255).astype(np.uint8)
