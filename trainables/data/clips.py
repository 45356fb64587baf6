"""Frame file names that say which clip a frame came from: ``<patient>-<clip>-<frame>.<ext>``.

The shared echo dataset names its frames so (``ZmNkwqloa8KTwp8=-unnamed_1_1.mp4-15.jpg``: patient,
source video, frame number), and ``python -m study.data frames`` writes them so. The patient is the
text before the first ``-`` (the split's default group), the frame the digits after the last; the
clip is everything between (a copy's ``(1)`` after the frame number is accepted: the frame of the same clip).
One module holds both directions, so writer and reader cannot drift.
"""

from __future__ import annotations

import os
import re

import numpy as np

# applied to the file name without its extension; a copy's suffix " (1)" / "(1)" after the frame number (a frame
# saved twice: ``…-16(1).jpg`` on the shared data) belongs to the same clip
CLIP_PATTERN = re.compile(r"^([^-]+)-(.+)-(\d+)(?: ?\(\d+\))?$")


def safe_part(text: str) -> str:
    """``text`` usable as one part of a frame name: '-' (the parts' separator) and path separators become '_'."""
    return re.sub(r"[-/\\\s]", "_", text) or "_"


def frame_name(patient: str, clip: str, frame: int, ext: str = ".jpg") -> str:
    """``<patient>-<clip>-<frame><ext>``, each part made safe; the frame zero-padded to 4 digits (sorts in order)."""
    return f"{safe_part(patient)}-{safe_part(clip)}-{frame:04d}{ext}"


def clip_ids(files: np.ndarray | list[str]) -> np.ndarray:
    """(N,) object array: each file's clip, ``"<patient>-<clip>"``, or None where its name does not give one."""
    out = np.empty(len(files), dtype=object)
    for i, path in enumerate(files):
        match = CLIP_PATTERN.match(os.path.splitext(os.path.basename(str(path)))[0])
        out[i] = f"{match.group(1)}-{match.group(2)}" if match else None
    return out
