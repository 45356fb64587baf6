"""Which pseudonym key named a frame: one key per data set, or one patient may carry two names.

``python -m study.data frames`` names every frame ``<patient>-<clip>-<frame>.jpg`` by keyed pseudonyms
(study/media/pseudonyms.py) and writes the key's fingerprint into the frame itself, as a JPEG comment
(COM segment) ``mtl-study pseudonym key <fingerprint>``: it travels with the file through copies,
labelling tools that keep the original bytes, and the data set's split folders. Frames named under
two keys give one patient two pseudonyms, which the patient split would then put on both sides: a
data set whose frames carry two fingerprints is refused (:func:`check_one_key`, run by every load of
a data set). Frames without the comment (any other image) are not checked.

Plain bytes only: the marker segments before the image data are walked, nothing is decoded, so the
check costs one small read per frame. (The data layer imports nothing of ``study``: the comment's
form is defined here, and study/media/export_frames.py writes it from here.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from trainables.data.errors import DataError
from trainables.data.labels import Problem
from trainables.wording import counted

KEY_COMMENT = "mtl-study pseudonym key "  # + the key's fingerprint (hex)
_KEY = re.compile(rb"mtl-study pseudonym key ([0-9a-f]{8,64})")
JPEG_SUFFIXES = (".jpg", ".jpeg")
MIXED_KEYS = "mixed_keys"
_SOS, _COM, _EOI = 0xDA, 0xFE, 0xD9
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


def key_comment(fingerprint: str) -> bytes:
    """The JPEG comment that records the key of a frame's pseudonyms."""
    return f"{KEY_COMMENT}{fingerprint}".encode()


def jpeg_comments(path: str | os.PathLike) -> list[bytes]:
    """The COM segments of a JPEG file, read from the markers before its image data ([] when none, or
    when it is no JPEG or cannot be read: decoding reports such a file)."""
    comments = []
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\xff\xd8":
                return []
            while True:
                head = f.read(2)
                if len(head) < 2 or head[0] != 0xFF:
                    return comments
                marker = head[1]
                if marker == 0xFF:  # fill byte before a marker
                    f.seek(-1, os.SEEK_CUR)
                    continue
                if marker in _STANDALONE:
                    continue
                if marker in (_SOS, _EOI):
                    return comments
                size = f.read(2)
                if len(size) < 2:
                    return comments
                length = int.from_bytes(size, "big") - 2
                if length < 0:
                    return comments
                if marker == _COM:
                    comments.append(f.read(length))
                else:
                    f.seek(length, os.SEEK_CUR)
    except OSError:
        return []


def key_of(path: str | os.PathLike) -> str | None:
    """The fingerprint of the key that named the frame in ``path``; None when it records none."""
    if not str(path).lower().endswith(JPEG_SUFFIXES):
        return None
    for comment in jpeg_comments(path):
        found = _KEY.search(comment)
        if found:
            return found.group(1).decode()
    return None


def keys_of(files: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """{fingerprint: the files it named}, for the files that record one."""
    keys: dict[str, list[str]] = {}
    for path in files:
        key = key_of(path)
        if key is not None:
            keys.setdefault(key, []).append(str(path))
    return keys


def check_one_key(files: Iterable[str | os.PathLike], source: str) -> dict[str, int]:
    """{fingerprint: frames} of ``files``; :class:`DataError` (one line) when they name two keys or more."""
    keys = keys_of(files)
    if len(keys) > 1:
        order = sorted(keys, key=lambda k: -len(keys[k]))
        found = ", ".join(f"{k} ({counted(len(keys[k]), 'frame')}, e.g. {os.path.basename(keys[k][0])})" for k in order)
        raise DataError([Problem(source, 0, f"its frames were named under {len(keys)} pseudonym keys: {found}; "
                                 "one patient may then carry two pseudonyms and sit on both sides of the "
                                 "patient split", "export the other frames again under the key that named the rest "
                                 "(python -m study.data frames --key-file FILE; python -m study.data key --key-file "
                                 "FILE shows its fingerprint)", MIXED_KEYS)])
    return {k: len(v) for k, v in keys.items()}
