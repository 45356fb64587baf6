"""``python -m study.data frames SOURCE --out DIR``: the frames of DICOMs and videos, named for labelling.

Every frame (or every k-th, ``--every k``) of a DICOM cine loop, a single-frame DICOM or a video -- or
of a folder of them, walked recursively as a PACS exports it (study/media/sources.py) -- is written as
``<patient>-<clip>-<frame>.jpg`` (trainables/data/clips.py), the naming the dataset reader, the
patient split (the patient is the part before the first ``-``) and the clip-level view accuracy read.
The frames are read by the same reader as ``study.predict`` (``study.media.frames_io.read_frames``), so
a labelled frame is the frame the model is later shown.

The patient part is ``--patient`` or, for a DICOM, the keyed pseudonym of its PatientID (with
IssuerOfPatientID), so two studies of one person are one patient to the split and the folds; without a
PatientID the StudyInstanceUID's, with a warning (study/media/deid.py). The clip part is a keyed hash of
a DICOM's SOPInstanceUID or of a video's file name (which may carry a name or a date). A video carries
no patient: give ``--patient``.

One key per data set: every frame carries the fingerprint of the key that named it as a JPEG comment
(trainables/data/provenance.py), and DIR gets :data:`MANIFEST` (the fingerprint, and per run what was
read, skipped and masked; no path). A DIR holding frames of another key is refused before anything is
written, and loading a data set whose frames name two keys is refused. Text burned into the pixels is
copied as it is unless ``--mask`` blanks it (study/media/mask.py); the header's BurnedInAnnotation is
warned about (study/media/sources.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from study.errors import UsageError
from study.media.deid import Naming
from study.media.dicom import UNDECODABLE, DicomProblem, NotAnImage, is_dicom, is_dicomdir
from study.media.frames_io import IMAGE_EXTS, Frame, read_frames, write_jpeg
from study.media.mask import Mask
from study.media.sources import IMAGE, Tally, find_sources
from study.store.atomic import atomic_path
from trainables.data.clips import frame_name
from trainables.data.provenance import key_comment, keys_of
from trainables.wording import counted

MANIFEST = "frames.json"


def name_parts(frame: Frame, naming: Naming) -> tuple[str, str]:
    """(patient, clip) of a frame's file name."""
    if frame.dicom is None:
        assert naming.patient is not None  # checked for every video before any frame is written
        return naming.patient, naming.video_clip(frame.source)
    written = naming.of(frame.source, frame.dicom)
    return written.patient, written.clip


def keys_in(out: Path) -> dict[str, str]:
    """{fingerprint: where it is recorded} of the keys that named what ``out`` already holds."""
    found: dict[str, str] = {}
    if not out.is_dir():
        return found
    try:
        recorded = json.loads((out / MANIFEST).read_text()).get("pseudonym_key_fingerprint")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str):
        found[recorded] = MANIFEST
    for key, frames in keys_of(sorted(p for p in out.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))).items():
        found.setdefault(key, f"{counted(len(frames), 'frame')}, e.g. {Path(frames[0]).name}")
    return found


def check_out(out: Path, naming: Naming) -> str:
    """The fingerprint of this run's key; :class:`UsageError` when ``out`` holds frames of another key."""
    fingerprint = naming.keys.fingerprint
    others = {k: v for k, v in keys_in(out).items() if k != fingerprint}
    if others:
        key, where = next(iter(others.items()))
        new = " (made by this run: was the key that named them lost, or is it on another machine?)" \
            if naming.keys.created else ""
        raise UsageError(f"--out {out}: holds frames named under the pseudonym key {key} ({where}), and this "
                         f"run's key {naming.keys.origin} is {fingerprint}{new}; one data set, one key (else one "
                         "patient gets two pseudonyms): give that key with --key-file FILE, or choose another --out")
    return fingerprint


def write_manifest(out: Path, fingerprint: str, run: dict) -> None:
    """``out/frames.json``: the key's fingerprint, what the patient part is, and this run appended."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        runs = manifest["runs"] if isinstance(manifest.get("runs"), list) else []
    except (OSError, ValueError, AttributeError, KeyError):
        runs = []
    manifest = {"written_by": "python -m study.data frames", "pseudonym_key_fingerprint": fingerprint,
                "note": "every frame's JPEG comment names this key too; frames of another key are refused",
                "runs": [*runs, run]}
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def extract(source: Path, out: Path, every: int = 1, patient: str | None = None, key_file: Path | None = None,
            masks: tuple[Mask, ...] = ()) -> tuple[int, int, Tally]:
    """Write the frames; (frames written, clips read, the tally: its ``finish`` prints the closing line).
    In a folder, a DICOM whose header was read but that cannot be used is one line naming it by its
    pseudonym, one whose header cannot be read is counted (named with --list-skipped). The audit line
    (study/media/deid.py) once any DICOM was read. ``key_file``: the pseudonym key, else this
    installation's; ``masks``: rectangles blanked in every frame."""
    if every < 1:
        raise UsageError(f"--every {every}: give a whole number of at least 1 (1 = every frame)")
    found = find_sources(source)
    naming = Naming(key_file, patient=patient)
    tally = Tally(found, naming, masks)
    files = []
    for path in found.files:
        if path.suffix.lower() in IMAGE_EXTS:
            tally.skip(IMAGE, tally.relative(path))
        else:
            files.append(path)
    if not files:
        raise UsageError(f"{source}: no DICOM or video here (images are frames already: label them as they are)")
    if patient is None:
        videos = [f for f in files if not is_dicom(f)]
        if videos:
            raise UsageError(f"{videos[0]}: a video names no patient; give --patient P (the part of each frame's "
                             "name the patient split groups by)")
    comment = key_comment(check_out(out, naming))  # every name has a keyed part: checked before any is written
    strict = source.is_file() and not is_dicomdir(source)
    written = clips = 0
    for path in files:
        done = 0
        try:
            for frame in read_frames(path, naming=naming, masks=masks):
                if frame.index == 0 and frame.dicom is not None:
                    tally.dicom(path, frame.dicom)
                elif frame.index == 0:
                    tally.other(path)
                if frame.index % every == 0:
                    who, clip = name_parts(frame, naming)
                    write_jpeg(frame.image, out / frame_name(who, clip, frame.index), comment)
                    written += 1
                done += 1
            clips += 1
        except DicomProblem as err:
            name = naming.name_of(err)
            if strict:
                raise UsageError(f"{name or path}: {err.why}") from None
            if done:  # a loop cut short: its first frames are written
                print(f"warning: {name}: frames 0 to {done - 1} written, then {err.why}", file=sys.stderr)
                clips += 1
                continue
            tally.problem(err)
            if name is not None:
                kind, verb = ("note", "skipped") if isinstance(err, NotAnImage) else ("warning", "left out")
                print(f"{kind}: {name}: {err.why}; {verb}", file=sys.stderr)
        except UsageError as err:  # a video (no header: named by its path, as given)
            if strict:
                raise
            tally.skip(UNDECODABLE, tally.relative(path))
            print(f"warning: {err}; left out", file=sys.stderr)
    if naming.used:
        print(naming.audit(frames=True, masks=masks), file=sys.stderr)
    if clips == 0:
        tally.finish(list_skipped=False)
        raise UsageError(f"{source}: none of its {len(files)} DICOMs or videos could be read")
    write_manifest(out, naming.keys.fingerprint, {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "frames": written, "clips": clips, "every": every,
        "patient_part": "--patient" if patient is not None else "keyed pseudonym of PatientID (IssuerOfPatientID)",
        "mask": [str(m) for m in masks], "read": dict(tally.read), "dicomdirs": tally.dicomdirs,
        "skipped": {reason: len(names) for reason, names in tally.skipped.items()}})
    return written, clips, tally
