"""DICOM files of each kind an echo archive holds, written with pydicom for the DICOM tests.

Every file carries a patient's identifying fields (:data:`PATIENT`, dates, an institution) and UIDs in
the form an echo machine writes them (a device root, a serial number and an acquisition date and
time), so a test can look for each of them in everything the tools write.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage (one frame)
STUDY_DATE, BIRTH_DATE = "20240311", "19610427"
PATIENT = {"PatientName": "Quennell^Ottilie", "PatientID": "PID-7731946", "IssuerOfPatientID": "StElsewhere",
           "PatientBirthDate": BIRTH_DATE, "StudyDate": STUDY_DATE, "SeriesDate": STUDY_DATE,
           "ContentDate": STUDY_DATE, "AcquisitionDateTime": f"{STUDY_DATE}093015", "StudyTime": "093015",
           "InstitutionName": "Saint Elsewhere Echo Lab"}
_serial = itertools.count(1)


def device_uid() -> str:
    """A UID as a vendor writes one: root, device serial number, acquisition date and time, a counter."""
    return f"1.2.840.113619.2.391.4417.{STUDY_DATE}.93015.{next(_serial)}"


def identifying_values(ds: Dataset) -> list[str]:
    """Everything in ``ds`` that must never reach an output: the patient's fields, dates and the UIDs."""
    values = [str(ds.get(k)) for k in PATIENT if ds.get(k)]
    values += [str(ds.PatientName).split("^")[0], str(ds.PatientName).split("^")[1]] if ds.get("PatientName") else []
    values += [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, "2024-03-11", "1961-04-27"]
    return values


def dataset(pixels: np.ndarray, photometric: str, *, multiframe: bool = True, bits_stored: int | None = None,
            signed: bool = False, identity: dict[str, Any] | None = None, **attrs: Any) -> Dataset:
    """An uncompressed ultrasound DICOM of ``pixels`` -- (N, H, W) or (N, H, W, 3) for a multi-frame loop,
    (H, W) or (H, W, 3) for one frame -- with the identity fields (:data:`PATIENT` unless ``identity``),
    new device-style UIDs and any further ``attrs`` (FrameTime, palette tables, a window, ...)."""
    colour = pixels.ndim == (4 if multiframe else 3)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME if multiframe else US_IMAGE
    meta.MediaStorageSOPInstanceUID = device_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = device_uid(), device_uid(), "US"
    for key, value in {**(PATIENT if identity is None else identity), **attrs}.items():
        setattr(ds, key, value)
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    if multiframe:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if colour else 1), photometric
    if colour:
        ds.PlanarConfiguration = 0
    allocated = 8 * pixels.itemsize
    ds.BitsAllocated, ds.BitsStored = allocated, bits_stored or allocated
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, int(signed)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def save(ds: Dataset, path: Path, syntax: str | None = None) -> Dataset:
    """Write ``ds`` to ``path``, compressed to ``syntax`` by pydicom's encoders (RLE natively, JPEG 2000
    through the ``[dicom]`` extra's pylibjpeg-openjpeg) when one is given."""
    if syntax is not None:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return ds


def jpeg_baseline(frames: np.ndarray, **attrs: Any) -> Dataset:
    """A YBR_FULL_422 JPEG Baseline loop of RGB ``frames`` (N, H, W, 3) uint8: each frame encoded by Pillow
    in YCbCr with 2x1 chroma subsampling, at quality 95, and encapsulated."""
    ds = dataset(frames, "RGB", **attrs)
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=95, subsampling="4:2:2")
        encoded.append(buffer.getvalue())
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    return ds


def palette(indices: np.ndarray, red: np.ndarray, green: np.ndarray, blue: np.ndarray, entry_bits: int,
            packed: bool = False, **attrs: Any) -> Dataset:
    """A PALETTE COLOR loop: ``indices`` (N, H, W) uint8 or uint16 through tables of ``entry_bits`` (8 or 16)
    bits per entry, stored as 16-bit words (OW, as the standard stores them) unless ``packed`` (8-bit
    entries one byte each, as some machines write them)."""
    ds = dataset(indices, "PALETTE COLOR", **attrs)
    descriptor = [len(red) % 65536, 0, entry_bits]
    for name, table in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", descriptor)
        data = table.astype(np.uint8 if packed else np.uint16).tobytes()
        setattr(ds, f"{name}PaletteColorLookupTableData", data)
        ds[f"{name}PaletteColorLookupTableDescriptor"].VR = "US"
        ds[f"{name}PaletteColorLookupTableData"].VR = "OW"
    return ds


def cli(main: Any, argv: list[Any], capsys: Any) -> tuple[int, str, str]:
    """Run a command's ``main`` as the shell would (``run_cli``: one-line errors, exit status): (status, stdout,
    stderr)."""
    from study.cli import run_cli

    code = run_cli(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err
