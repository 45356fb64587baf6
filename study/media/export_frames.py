"""``python -m study.data frames SOURCE --out DIR``: the frames of DICOMs and videos, named for labelling.

Every frame (or every k-th, ``--every k``) of a DICOM cine loop, a single-frame DICOM or a video -- or
of a folder of them -- is written as ``<patient>-<clip>-<frame>.jpg`` (trainables/data/clips.py), the
naming the dataset reader, the patient split (the patient is the part before the first ``-``) and the
clip-level view accuracy read. The frames are read by the same reader as ``study.predict``
(``study.media.frames_io.read_frames``), so a labelled frame is the frame the model is later shown.

The patient part is ``--patient`` or, for a DICOM, the keyed pseudonym of its PatientID (with
IssuerOfPatientID), so two studies of one person are one patient to the split and the folds; without a
PatientID the StudyInstanceUID's, with a warning (study/media/deid.py). The clip part is a keyed hash of
a DICOM's SOPInstanceUID or of a video's file name (which may carry a name or a date). A video carries
no patient: give ``--patient``. Text burned into the pixels is copied as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from study.errors import UsageError
from study.media.deid import Naming
from study.media.dicom import NotAnImage, is_dicom
from study.media.frames_io import IMAGE_EXTS, Frame, list_sources, read_frames, write_jpeg
from trainables.data.clips import frame_name


def name_parts(frame: Frame, naming: Naming) -> tuple[str, str]:
    """(patient, clip) of a frame's file name."""
    if frame.dicom is None:
        assert naming.patient is not None  # checked for every video before any frame is written
        return naming.patient, naming.video_clip(frame.source)
    written = naming.of(frame.source, frame.dicom)
    return written.patient, written.clip


def extract(source: Path, out: Path, every: int = 1, patient: str | None = None,
            key_file: Path | None = None) -> tuple[int, int]:
    """Write the frames; (frames written, clips read). One warning per unreadable file in a folder; the
    audit line (study/media/deid.py) once any DICOM was read. ``key_file``: the pseudonym key, else this
    installation's."""
    if every < 1:
        raise UsageError(f"--every {every}: give a whole number of at least 1 (1 = every frame)")
    files = [f for f in list_sources(source) if f.suffix.lower() not in IMAGE_EXTS]
    if not files:
        raise UsageError(f"{source}: no DICOM or video here (images are frames already: label them as they are)")
    if patient is None:
        videos = [f for f in files if not is_dicom(f)]
        if videos:
            raise UsageError(f"{videos[0]}: a video names no patient; give --patient P (the part of each frame's "
                             "name the patient split groups by)")
    strict, written, clips, naming = not source.is_dir(), 0, 0, Naming(key_file, patient=patient)
    for path in files:
        try:
            for frame in read_frames(path, naming=naming):
                if frame.index % every == 0:
                    who, clip = name_parts(frame, naming)
                    write_jpeg(frame.image, out / frame_name(who, clip, frame.index))
                    written += 1
            clips += 1
        except NotAnImage as err:
            if strict:
                raise
            print(f"note: {err}; skipped", file=sys.stderr)
        except UsageError as err:
            if strict:
                raise
            print(f"warning: {err}; left out", file=sys.stderr)
    if naming.used:
        print(naming.audit(frames=True), file=sys.stderr)
    if clips == 0:
        raise UsageError(f"{source}: none of its {len(files)} DICOMs or videos could be read")
    return written, clips
