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
pseudonyms of study/media/pseudonyms.py, never written as it is), the frame count and timing, the
pixel description (:data:`PIXEL_ATTRIBUTES`) and what says whether text is burned into the pixels
(:data:`BURNED_IN`: Modality, BurnedInAnnotation; the commands warn and ``--mask`` blanks it).

A file that cannot be used raises :class:`DicomProblem`, which keeps apart *which* file (its path and,
when its header was read, the header, so the commands name it by its pseudonym) and *what* is wrong
(``reason``, one of :data:`REASONS`, and ``why``, a text that names no file). pydicom's own warnings
(which may quote a header's values) are silenced while a file is read.
"""

from __future__ import annotations

import contextlib
import warnings
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


SR_CLASSES = "1.2.840.10008.5.1.4.1.1.88."  # Structured Report Storage SOP classes (PS3.4 A.35)
DICOMDIR_NAME = "DICOMDIR"  # the File-set's index, by this name (PS3.10 8.6)

# Why a file is left out; a file whose header was read is named by its pseudonym, the others by their path
NOT_DICOM = "not DICOM"  # neither an image, a video nor a DICOM (no DICM preamble), or a .dcm without one
UNREADABLE = "unreadable header"  # the DICM preamble, but no readable header: named by its path only
NO_PIXELS = "no pixel data"  # a header without pixel data (a presentation state, a key object, ...)
REPORT = "structured report"
INDEX = "DICOMDIR"  # an index of other files: they are read, the index is not an image
UNDECODABLE = "undecodable"  # a header, but pixel data that cannot be decoded (truncated, unsupported syntax)
MISSING = "listed in a DICOMDIR, not found"
REASONS = (NOT_DICOM, UNREADABLE, NO_PIXELS, REPORT, INDEX, UNDECODABLE, MISSING)


class DicomProblem(UsageError):
    """A DICOM that cannot be used. ``reason``: one of :data:`REASONS`; ``why``: what is wrong, naming no
    file; ``header``: the header when it was read (the file is then named by its pseudonym), else None
    (named by its path, the only name it has). ``str()`` names it by its path: the commands name it
    through study/media/deid.py ``Naming.name_of``."""

    def __init__(self, path: Path, reason: str, why: str, header: DicomHeader | None = None) -> None:
        self.path, self.reason, self.why, self.header = path, reason, why, header
        super().__init__(f"{path}: {why}")


class NotAnImage(DicomProblem):
    """A DICOM that holds no image (a DICOMDIR, a structured report, ...): left out of a folder with a note."""


IDENTITY = ("PatientID", "IssuerOfPatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
BURNED_IN = ("Modality", "BurnedInAnnotation")
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
    modality: str = ""  # "US" for ultrasound
    burned_in: str = ""  # BurnedInAnnotation (0028,0301): "YES", "NO", or "" when the header does not say


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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """pydicom's warnings silenced: a validation warning quotes the value it found (a name, an ID, a UID)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _dataset(path: Path):  # -> pydicom.Dataset, large values (the pixels) read when used
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with quiet():
            return pydicom.dcmread(path, stop_before_pixels=False, defer_size=1024, force=False)
    except InvalidDicomError:
        raise DicomProblem(path, NOT_DICOM, "not a DICOM file (no 'DICM' header); export it from the scanner or "
                           "PACS again, or give it its real suffix") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError, IndexError) as err:
        raise DicomProblem(path, UNREADABLE, f"cannot read the DICOM header ({_why(err, path)})") from None


def _why(err: BaseException, path: Path | None = None) -> str:
    """An exception's first line (pydicom's messages run over several), without the file's path (an
    OSError's message names it, and a folder may be named after the patient)."""
    text = (getattr(err, "strerror", None) if isinstance(err, OSError) else None) or str(err)
    line = (text.splitlines() or [type(err).__name__])[0]
    if path is not None:
        for form in sorted({str(path.resolve()), str(path.absolute()), str(path)}, key=len, reverse=True):
            line = line.replace(form, "<file>")
    return line


def is_dicomdir(path: Path) -> bool:
    """A File-set's index by its standard name (PS3.10 8.6); one under another name is found by its class."""
    return path.name.upper() == DICOMDIR_NAME


def dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR lists (pydicom's ``FileSet``: each record's ReferencedFileID, relative to the
    DICOMDIR's folder), whether or not they are there; :class:`DicomProblem` when it cannot be read."""
    from pydicom.fileset import FileSet

    ds = _dataset(path)
    try:
        with quiet():
            return [Path(instance.path) for instance in FileSet(ds)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, NotImplementedError) as err:
        raise DicomProblem(path, UNREADABLE, f"cannot read the DICOMDIR's records ({_why(err, path)})") from None


def read_header(path: Path) -> DicomHeader:
    """The frame count, frame rate and UIDs of an image DICOM; :class:`NotAnImage` for a DICOMDIR or an
    object without pixel data, :class:`DicomProblem` for an unreadable file or a syntax no decoder here reads."""
    ds = _dataset(path)
    with quiet():  # reading a value validates it, and a warning would quote it
        sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
        if sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
            raise NotAnImage(path, INDEX, "a DICOMDIR (an index of other files): the files it lists are read")
        if not sop_class and "SOPInstanceUID" not in ds and "StudyInstanceUID" not in ds:  # nothing says what it is
            raise DicomProblem(path, UNREADABLE, "its header names no SOP class or instance (a file cut short?)")
        header = DicomHeader(
            frames=int(ds.get("NumberOfFrames", 1) or 1), rate=frame_rate(ds),
            study_uid=str(ds.get("StudyInstanceUID", "")), series_uid=str(ds.get("SeriesInstanceUID", "")),
            sop_uid=str(ds.get("SOPInstanceUID", "")), patient_id=_text(ds, "PatientID"),
            issuer=_text(ds, "IssuerOfPatientID"), modality=_text(ds, "Modality").upper(),
            burned_in=_text(ds, "BurnedInAnnotation").upper())
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if sop_class.startswith(SR_CLASSES):
            raise NotAnImage(path, REPORT, "a structured report (no pixel data)", header)
        raise NotAnImage(path, NO_PIXELS, f"a DICOM without pixel data (SOP class {sop_class or 'unknown'})", header)
    _check_decoder(path, ds, header)
    return header


def _text(ds, keyword: str) -> str:
    """A text attribute without DICOM's space padding; '' when absent or empty."""
    return str(ds.get(keyword, "") or "").strip()


def _check_decoder(path: Path, ds, header: DicomHeader) -> None:
    from pydicom.pixels.decoders.base import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        decoder = get_decoder(syntax)
    except (NotImplementedError, ValueError):
        raise DicomProblem(path, UNDECODABLE, f"pixel data in transfer syntax {syntax} "
                           f"({getattr(syntax, 'name', '?')}), which pydicom cannot decode; export the clip "
                           "uncompressed or as JPEG Baseline", header) from None
    if not decoder.is_available:
        raise DicomProblem(path, UNDECODABLE, f"its pixel data is {syntax.name}, which needs a decoder plugin: "
                           f"{EXTRA_HINT}", header)


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


def read_dicom_frames(path: Path, header: DicomHeader | None = None) -> Iterator[Image.Image]:
    """The frames of an image DICOM as RGB PIL images, one at a time (a long loop is never held whole).
    ``header``: the file's (:func:`read_header`), carried by the :class:`DicomProblem` of pixel data that
    cannot be decoded, so that the file is named by its pseudonym."""
    from pydicom.pixels import iter_pixels

    ds = _dataset(path)
    try:
        with quiet():
            frames = iter_pixels(path, as_rgb=True)  # YBR_FULL(_422) -> RGB once; a JPEG's RGB stays as it is
        while True:
            with quiet():  # around each frame only: the caller's code between frames keeps its warnings
                array = next(frames, None)
                if array is None:
                    return
                image = Image.fromarray(to_8bit(array, ds), "RGB")
            yield image
    except (RuntimeError, ValueError, NotImplementedError, OSError, EOFError, AttributeError, KeyError,
            TypeError, IndexError) as err:
        raise DicomProblem(path, UNDECODABLE, f"cannot decode its pixel data ({_why(err, path)})", header) from None


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
