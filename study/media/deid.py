"""What a command writes for a DICOM in place of what identifies it, and the audit line that says so.

``study.predict`` and ``study.data frames`` name a DICOM in every output -- Parquet columns, file and
frame names, note and warning lines -- by :class:`Written`: the patient's keyed pseudonym, a keyed clip
name and ``2.25.`` pseudonyms of its UIDs (study/media/pseudonyms.py). Nothing read from a header is
written as it is unless the user asks with ``--keep-uids`` (predict only: the original UIDs and the
file's path, for joining predictions back to the archive inside the hospital). Every message about a
file whose header was read -- pixel data that cannot be decoded, a report, no pixel data -- names it by
its pseudonym too (:meth:`Naming.name_of`); a file whose header cannot be read at all has no other name
than its path, which the commands print only when asked (``--list-skipped``: study/media/sources.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from study.media.dicom import BURNED_IN, IDENTITY, PIXEL_ATTRIBUTES, TIMING, DicomHeader, DicomProblem
from study.media.pseudonyms import Pseudonyms


@dataclass(frozen=True)
class Written:
    """What the outputs carry for one DICOM."""

    patient: str  # keyed pseudonym of PatientID (+ issuer), or of the StudyInstanceUID without one
    clip: str  # keyed, from the SOPInstanceUID
    study_uid: str  # 2.25. pseudonyms; the originals with --keep-uids
    series_uid: str
    sop_uid: str
    source: str  # the file in outputs: "<patient>-<clip>"; its path with --keep-uids

    @property
    def name(self) -> str:
        """``<patient>-<clip>``: the stem of an annotated copy, the clip of labelled frames."""
        return f"{self.patient}-{self.clip}"


class Naming:
    """One command's names for the DICOMs it reads, computed once per file; the key is loaded on first use.

    ``patient``: a fixed patient part (``frames --patient``) instead of the pseudonym."""

    def __init__(self, key_file: Path | None = None, keep_uids: bool = False, patient: str | None = None) -> None:
        self.key_file, self.keep_uids, self.patient = key_file, keep_uids, patient
        self._keys: Pseudonyms | None = None
        self._done: dict[Path, Written] = {}

    @property
    def keys(self) -> Pseudonyms:
        if self._keys is None:
            self._keys = Pseudonyms.load(self.key_file)
        return self._keys

    @property
    def used(self) -> bool:
        """Whether any DICOM was named (the audit line is printed then)."""
        return bool(self._done)

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the key, once it was loaded (None when no pseudonym was made)."""
        return self._keys.fingerprint if self._keys is not None else None

    def of(self, path: Path, header: DicomHeader, warn: bool = True) -> Written:
        """What the outputs carry for ``path``; ``warn``: say when it has no PatientID (not for a file left
        out, which reaches no output)."""
        if path not in self._done:
            self._done[path] = self._name(path, header, warn)
        return self._done[path]

    def name_of(self, err: DicomProblem) -> str | None:
        """How a message names the file of ``err``: its pseudonymous ``<patient>-<clip>`` (its path with
        --keep-uids) when its header was read, else None (it has no name but its path)."""
        if err.header is None:
            return None
        return self.of(err.path, err.header, warn=False).source

    def _name(self, path: Path, h: DicomHeader, warn: bool = True) -> Written:
        keys = self.keys
        clip = keys.clip(h.sop_uid or path.name)
        if self.patient is not None:
            patient = self.patient
        elif h.patient_id:
            patient = keys.patient(h.patient_id, h.issuer)
        else:
            by = "StudyInstanceUID" if h.study_uid else "file name"
            patient = keys.patient(h.study_uid or path.name, by)
            if warn:
                    print(f"warning: {patient}-{clip}: no PatientID; its patient is named by its {by}, so "
                      "follow-up studies of one person will not group as one patient", file=sys.stderr)
        if self.keep_uids:
            return Written(patient, clip, h.study_uid, h.series_uid, h.sop_uid, str(path))
        uids = [keys.uid(u) if u else "" for u in (h.study_uid, h.series_uid, h.sop_uid)]
        return Written(patient, clip, *uids, f"{patient}-{clip}")

    def video_clip(self, path: Path) -> str:
        """A video's clip part: a keyed hash of its file name (which may carry a name or a date)."""
        return self.keys.clip(path.name)

    def audit(self, frames: bool = False, masks: tuple = ()) -> str:
        """The line every command that read DICOM prints: which attributes it used and what it wrote
        (``frames``: for ``study.data frames``, else for ``study.predict``; ``masks``: the --mask rectangles)."""
        pixels = "the pixels" + (f" (--mask {' and '.join(map(str, masks))} blanked)" if masks else "")
        if frames:
            patient = "--patient" if self.patient is not None else "the patient pseudonym"
            wrote = f"frame names <{patient}>-<keyed clip>-<frame> and {pixels}"
        elif self.keep_uids:
            wrote = ("the patient pseudonym, the ORIGINAL Study/Series/SOP Instance UIDs and file paths "
                     f"(--keep-uids: this output identifies studies) and {pixels}")
        else:
            wrote = ("the patient pseudonym, keyed 2.25. pseudonyms of the Study/Series/SOP Instance UIDs, "
                     f"<patient>-<clip> as each file's name and {pixels}")
        purpose = "to pseudonymise" + ("; the UIDs also as they are" if self.keep_uids and not frames else "")
        return (f"dicom: used {', '.join(IDENTITY)} ({purpose}), {', '.join(TIMING)}, "
                f"{', '.join(PIXEL_ATTRIBUTES)}, {', '.join(BURNED_IN)} (to warn of burned-in text); "
                f"wrote {wrote} (HMAC-SHA-256 under {self.keys.origin}, key "
                f"fingerprint {self.keys.fingerprint}); no patient name, ID, birth date, institution or header "
                "date is written")
