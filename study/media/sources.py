"""What a command reads from SOURCE, and the one line that says what it read and what it left out.

A PACS or an echo machine exports a tree -- PATIENT/STUDY/SERIES/IM0001, the files often without a
suffix, sometimes with a DICOMDIR at the top -- so a folder is walked recursively (:func:`find_sources`):
an image or a video by its suffix, a DICOM by the ``DICM`` magic after its 128-byte preamble whatever
its name (or a ``.dcm`` suffix), a DICOMDIR by its name, whose listed files (pydicom's ``FileSet``) are
read with the rest and never as an image themselves. SOURCE may also be one file, or a DICOMDIR.

The commands count every file (:class:`Tally`) and end with one line::

    files: read 3 (3 DICOM) and 1 DICOMDIR; skipped 4: 1 not DICOM, 1 no pixel data, 1 structured report,
    1 undecodable (--list-skipped names them)

(one line on the console).

``--list-skipped`` then names each skipped file: by its pseudonymous ``<patient>-<clip>`` when its
header was read (study/media/deid.py), else by its path relative to SOURCE. Why relative: the part of
the path the user typed is theirs, and what lies below it is the export's own layout -- which may
name a patient (a folder ``DOE^JOHN/``), so such paths are printed only when asked for, never in the
per-file warnings. Files that are not DICOM (a PACS's XML, a viewer's executables) are counted only.

Burned-in text: a DICOM's header says whether text is burned into its pixels (BurnedInAnnotation,
0028,0301). ``YES`` is a warning per file; a header that does not say, on ultrasound (Modality US,
where the scanner burns the name and date into the image as a rule), is counted and said once at the
end. ``--mask`` (study/media/mask.py) blanks the band.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from study.errors import UsageError
from study.media.deid import Naming
from study.media.dicom import (
    INDEX,
    MISSING,
    NOT_DICOM,
    REASONS,
    UNREADABLE,
    DicomHeader,
    DicomProblem,
    dicomdir_files,
    is_dicom,
    is_dicomdir,
)
from study.media.mask import Mask
from trainables.wording import counted

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
IMAGE = "image (a frame already: label it as it is)"  # study.data frames leaves images alone
LIST_HELP = ("after the count of skipped files, name each: by its pseudonym when its header was read, else by "
             "its path below SOURCE (folder names of an export may name the patient)")


def kind_of(path: Path) -> str:
    """``image``, ``video`` or ``DICOM`` (by suffix; anything else is taken for a DICOM)."""
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTS else "video" if suffix in VIDEO_EXTS else "DICOM"


def is_supported(path: Path) -> bool:
    """An image or video by its suffix, or a DICOM by its suffix or magic."""
    return path.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS or is_dicom(path)


@dataclass
class Sources:
    """What SOURCE holds. ``files``: what to read, in path order; ``root``: the folder paths are named
    relative to; ``skipped``: (reason, path) of files left out before reading (not DICOM, a DICOMDIR's
    missing files); ``dicomdirs``: the indexes read; ``looked``: files looked at."""

    root: Path
    files: list[Path]
    skipped: list[tuple[str, Path]] = field(default_factory=list)
    dicomdirs: list[Path] = field(default_factory=list)
    looked: int = 0


def _walk(folder: Path) -> list[Path]:
    """Every file under ``folder`` (symbolic links to folders not followed), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(Path(dirpath) / name for name in sorted(filenames))
    return found


def find_sources(source: Path) -> Sources:
    """The files SOURCE names: itself, a DICOMDIR's listed files, or a folder's supported files, recursively."""
    if source.is_dir():
        found = Sources(source, [])
        for path in _walk(source):
            found.looked += 1
            if is_dicomdir(path):
                found.dicomdirs.append(path)
            elif is_supported(path):
                found.files.append(path)
            else:
                found.skipped.append((NOT_DICOM, path))
        _add_listed(found)
        if not found.files:
            n = found.looked
            raise UsageError(f"{source}: no images, videos or DICOMs in this folder or its subfolders ("
                             f"{counted(n, 'file')} looked at for {', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))}, "
                             ".dcm and the DICM header)")
        return found
    if not source.is_file():
        raise UsageError(f"{source}: no such file or folder")
    if is_dicomdir(source):
        found = Sources(source.parent, [], dicomdirs=[source], looked=1)
        _add_listed(found)
        if not found.files:
            raise UsageError(f"{source}: a DICOMDIR that lists no file that is here; give the folder it indexes")
        return found
    if not is_supported(source):
        raise UsageError(f"{source}: unsupported file type '{source.suffix}'; give an image "
                         f"({', '.join(sorted(IMAGE_EXTS))}), a video ({', '.join(sorted(VIDEO_EXTS))}), a DICOM, "
                         "a DICOMDIR or a folder")
    return Sources(source.parent, [source], looked=1)


def _add_listed(found: Sources) -> None:
    """The files the DICOMDIRs list that the walk did not find (a file without the preamble, or under a
    name whose case differs from the record's, as on a CD mounted case-insensitively), in place;
    the listed files that are not there are counted as skipped."""
    have = {os.path.normcase(p.resolve()) for p in found.files}
    lower = {str(p.resolve()).lower(): p for p in found.files + [p for _, p in found.skipped]}
    for index in found.dicomdirs:
        try:
            listed = dicomdir_files(index)
        except DicomProblem as err:
            found.skipped.append((UNREADABLE, err.path))
            continue
        for path in listed:
            if os.path.normcase(path.resolve()) in have:
                continue
            twin = path if path.is_file() else lower.get(str(path.resolve()).lower())
            if twin is None:
                found.skipped.append((MISSING, path))
                continue
            if os.path.normcase(twin.resolve()) in have:
                continue
            found.skipped = [(r, p) for r, p in found.skipped if p != twin]  # listed: a DICOM after all
            found.files.append(twin)
            have.add(os.path.normcase(twin.resolve()))


class Tally:
    """What a command read and left out, by reason; the closing line; the burned-in-text warnings.

    ``naming``: how a file whose header was read is named (its pseudonym); ``masks``: the --mask
    rectangles (the warnings say they are applied)."""

    def __init__(self, found: Sources, naming: Naming, masks: tuple[Mask, ...] = ()) -> None:
        self.root, self.naming, self.masks = found.root, naming, masks
        self.read: Counter[str] = Counter()
        self.skipped: dict[str, list[str]] = {}
        self.dicomdirs = len(found.dicomdirs)
        self.unstated_us = 0  # ultrasound DICOMs whose header does not say whether text is burned in
        self._seen: set[Path] = set()
        for reason, path in found.skipped:
            self.skip(reason, self.relative(path))

    def relative(self, path: Path) -> str:
        """``path`` below SOURCE (for --list-skipped only), or its name when it lies elsewhere."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.name

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)

    def problem(self, err: DicomProblem) -> str | None:
        """Count a DICOM left out; the name a message may give it (its pseudonym), None when it has none."""
        name = self.naming.name_of(err)
        if err.reason == INDEX:
            self.dicomdirs += 1
            return "a DICOMDIR"
        self.skip(err.reason, name if name is not None else self.relative(err.path))
        return name

    def dicom(self, path: Path, header: DicomHeader) -> None:
        """A DICOM whose frames are used: counted, and its burned-in text warned about."""
        if path in self._seen:
            return
        self._seen.add(path)
        self.read["DICOM"] += 1
        masked = f"; --mask {' and '.join(map(str, self.masks))} blanks part of every frame: check one frame " \
                 "that it covers the text" if self.masks else "; blank it with --mask (docs/dicom-and-privacy.md)"
        if header.burned_in == "YES":
            print(f"warning: {self.naming.of(path, header).source}: BurnedInAnnotation YES: text (names, dates) is "
                  f"burned into its pixels and copied into every output of them{masked}", file=sys.stderr)
        elif not header.burned_in and header.modality == "US":
            self.unstated_us += 1

    def other(self, path: Path) -> None:
        """An image or a video whose frames are used."""
        if path not in self._seen:
            self._seen.add(path)
            self.read[kind_of(path)] += 1

    def burned_in_warning(self) -> str | None:
        """One line for the ultrasound DICOMs whose header does not say whether text is burned in."""
        n = self.unstated_us
        if not n:
            return None
        masked = (f"--mask {' and '.join(map(str, self.masks))} blanks part of every frame: check one frame that "
                  "it covers the text") if self.masks else \
            "look at one frame and blank the text with --mask X0,Y0,X1,Y1 (e.g. --mask 0,0,1,0.1: the top tenth)"
        return (f"warning: {counted(n, 'ultrasound DICOM')} {'does' if n == 1 else 'do'} not state BurnedInAnnotation: "
                f"scanners burn the patient's name, ID and the date into the image, and such text is copied into "
                f"every output of its pixels; {masked}")

    def line(self) -> str:
        """``files: read 3 (3 DICOM) and 1 DICOMDIR; skipped 2: 1 not DICOM, 1 undecodable (--list-skipped ...)``"""
        n = sum(self.read.values())
        kinds = ", ".join(f"{self.read[k]} {k}" for k in ("DICOM", "video", "image") if self.read[k])
        text = f"files: read {n}" + (f" ({kinds})" if kinds else "")
        if self.dicomdirs:
            text += f" and {counted(self.dicomdirs, 'DICOMDIR')}"
        total = sum(len(v) for v in self.skipped.values())
        if not total:
            return text + "; skipped none"
        order = [*REASONS, IMAGE, *sorted(set(self.skipped) - {*REASONS, IMAGE})]
        parts = ", ".join(f"{len(self.skipped[r])} {r}" for r in order if self.skipped.get(r))
        return f"{text}; skipped {total}: {parts} (--list-skipped names them)"

    def listing(self) -> list[str]:
        """One line per skipped file: ``  skipped (undecodable): 1d82162d3049acf1-ae8e78de83``."""
        order = [*REASONS, IMAGE, *sorted(set(self.skipped) - {*REASONS, IMAGE})]
        return [f"  skipped ({reason}): {name}" for reason in order for name in self.skipped.get(reason, [])]

    def finish(self, list_skipped: bool) -> None:
        """The closing lines on stderr: the burned-in-text warning, the count, and the list when asked."""
        warning = self.burned_in_warning()
        if warning:
            print(warning, file=sys.stderr)
        lines = [self.line()]
        if list_skipped:
            lines += self.listing()
            lines[0] = lines[0].replace(" (--list-skipped names them)", "")
        print("\n".join(lines), file=sys.stderr)
