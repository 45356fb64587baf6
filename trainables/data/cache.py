"""On-disk cache of decoded datasets: plain ``.npy`` arrays and one ``meta.json``, never pickle.

Where: ``$MTL_STUDY_CACHE``, else ``$XDG_CACHE_HOME/mtl-study``, else ``~/.cache/mtl-study`` —
never next to the dataset (it may be read-only or shared). One folder per fingerprint; a folder is
written under a temporary name and renamed into place, so a crash or a concurrent writer never
leaves a half-written entry that a later run would trust. Old entries are not evicted: delete the
folder to reclaim space.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.labels import Problem
from trainables.data.splits import group_keys
from trainables.data.types import DecodedData

FORMAT_VERSION = 1  # bump when the decoded layout or the decode method changes


def cache_dir() -> Path:
    """The tool's cache folder (not created here)."""
    if os.environ.get("MTL_STUDY_CACHE"):
        return Path(os.environ["MTL_STUDY_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mtl-study"


def fingerprint(source_hash: str, settings: dict[str, Any]) -> str:
    """sha256 hex of the source content hash and the decode settings (which must be JSON-able)."""
    payload = json.dumps({"source": source_hash, "settings": settings, "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def entry_dir(key: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / key[:32]


def save(data: DecodedData, skipped: list[Problem], root: Path | None = None) -> Path:
    """Write ``data`` and the skipped-file problems under its fingerprint; returns the entry folder."""
    final = entry_dir(data.fingerprint, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        arrays = {"images": data.images, "boxes": data.boxes, "views": data.views, "files": data.files}
        arrays.update({f"split_{name}": idx for name, idx in data.splits.items()})
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        meta = {
            "format": FORMAT_VERSION,
            "fingerprint": data.fingerprint,
            "names": list(data.names),
            "view_names": list(data.view_names),
            "splits": list(data.splits),
            "skipped": [asdict(p) for p in skipped],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if final.exists():  # a broken entry (load refused it): move it aside, then replace it
            trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            with contextlib.suppress(OSError):  # another process may have moved it first
                final.rename(trash / "entry")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same entry first: keep theirs (same content)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load(key: str, root: Path | None = None) -> tuple[DecodedData, list[Problem]] | None:
    """The cached entry for ``key``, or None if absent or unreadable (then it is rebuilt)."""
    folder = entry_dir(key, root)
    if not (folder / "meta.json").is_file():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT_VERSION or meta.get("fingerprint") != key:
            return None

        def arr(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", allow_pickle=False)

        data = DecodedData(
            images=arr("images"),
            boxes=arr("boxes"),
            views=arr("views"),
            groups=np.zeros(0, dtype=str),  # filled below; the loader recomputes them with its regex
            splits={name: arr(f"split_{name}") for name in meta["splits"]},
            names=tuple(meta["names"]),
            view_names=tuple(meta["view_names"]),
            fingerprint=key,
            files=arr("files"),
        )
        data = dataclasses.replace(data, groups=group_keys(data.files)[0])
        skipped = [Problem(**p) for p in meta["skipped"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"cache: ignoring the unreadable entry {folder} ({err}); decoding again", file=sys.stderr)
        return None
    return data, skipped
