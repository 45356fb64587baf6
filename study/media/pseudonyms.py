"""Keyed pseudonyms for DICOM: which patient, study, series and instance, without the originals.

Every pseudonym is an HMAC-SHA-256 (RFC 2104; Python's ``hmac``) of the original value under one
secret key, so the same patient or study gets the same pseudonym on every run and every machine that
shares the key, and nobody without the key can recompute or reverse it (an unsalted hash of a UID
can be recomputed by anyone with access to the archive). Each kind of value is hashed under its own
label (``patient``, ``uid``, ``clip``), so a pseudonym of one kind never equals one of another.

- The patient: PatientID, qualified by IssuerOfPatientID where present (two hospitals may hand out
  one ID), as 16 hex characters (64 bits). A file without PatientID falls back to its
  StudyInstanceUID; the caller warns that follow-up studies of that person will not group.
- A UID: ``2.25.<integer>``, the form of DICOM PS3.5 B.2 (a UID derived from a UUID): the HMAC's first
  16 bytes as a version-4 UUID (RFC 4122 version and variant bits set), so it is a valid UID of at most
  44 characters. pydicom's ``generate_uid(prefix=None)`` gives the same form but only from random
  bits (its ``entropy_srcs`` work with a prefix and hash with unkeyed SHA-512, giving a number too large
  for a UUID under ``2.25.``), so the UUID is built here from the keyed hash. Study, Series and SOP
  Instance UIDs are replaced, as PS3.15 Annex E's Basic Profile does (and as dicognito does for every
  UI element but the class and transfer syntax UIDs, which are not written here at all).

Why not dicognito itself: it rewrites whole DICOM datasets (names, dates, addresses, UIDs) for
re-export, while these tools write no DICOM, only a few pseudonyms; and its repeatable mapping hashes
a seed string prepended to the value with MD5 (``Randomizer.to_int``), not a keyed HMAC.
- A clip: 10 hex characters (40 bits) of a SOP Instance UID or a video's file name, for frame names.

The key: 32 random bytes (``secrets``), written once as 64 hex characters to ``key_path()`` --
``$MTL_STUDY_CONFIG/dicom-key``, else ``$XDG_CONFIG_HOME/mtl-study/dicom-key``, else
``~/.config/mtl-study/dicom-key`` -- with mode 0600. It is a setting, not a cache: deleting
``~/.cache/mtl-study`` to reclaim space must not change every pseudonym. ``--key-file`` names another
(one key shared by the machines of one project); moving the file away rotates it. A key made on first
use is a ``warning:`` (a lost key -- a new machine, another HOME, a container -- silently made anew
would give every patient a second pseudonym); ``python -m study.data key --create`` makes it on purpose.

The fingerprint (:attr:`Pseudonyms.fingerprint`) names the key in every output -- the frames' JPEG
comment and ``frames.json``, the Parquet files' metadata, the ``dicom:`` line -- so that outputs of
two keys are told apart and a data set mixing them is refused (trainables/data/provenance.py). It is
8 hex characters (32 bits) of HMAC-SHA-256 under the key of the fixed label ``fingerprint``: a one-way
function of the 256-bit key, so it cannot give the key back (finding a key that matches it means
trying keys, and 32 bits leave some 2^224 keys for each fingerprint), and it cannot make a pseudonym
(each pseudonym is the HMAC of another label and a patient's value under the key itself).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
import uuid
from pathlib import Path

from study.errors import UsageError

KEY_NAME = "dicom-key"
KEY_BYTES = 32  # 256 bits, the HMAC-SHA-256 block's natural key size
PATIENT_CHARS = 16  # 64 bits: no two patients of an archive collide in practice
CLIP_CHARS = 10  # 40 bits: clips are told apart within one patient


def key_dir() -> Path:
    """The tool's settings folder, where the key lives (not created here)."""
    if os.environ.get("MTL_STUDY_CONFIG"):
        return Path(os.environ["MTL_STUDY_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "mtl-study"


def key_path() -> Path:
    return key_dir() / KEY_NAME


def _create_key(path: Path) -> bool:
    """Write a new key to ``path``, mode 0600 from the start; a concurrent run's key wins if it came first
    (then False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another run created the key meanwhile: then that key is the key
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    print(f"warning: created the DICOM pseudonym key {path} (a new key; mode 0600, fingerprint "
          f"{Pseudonyms(read_key(path), path).fingerprint}): every pseudonym depends on it, so losing it "
          "changes every patient's pseudonym. If this project already has a key, this run's pseudonyms do not "
          "match its: put that key in its place (or give --key-file) and run again; else back this one up "
          "(docs/dicom-and-privacy.md)", file=sys.stderr)
    return True


def read_key(path: Path) -> bytes:
    """The key in ``path``: 64 hex characters (a trailing newline allowed)."""
    try:
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except FileNotFoundError:
        raise UsageError(f"--key-file {path}: no such file; copy the key file of the machine whose pseudonyms "
                         f"you want ({key_path()} there), or leave --key-file out to use this machine's") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path}: not a DICOM pseudonym key ({type(err).__name__}); it holds 64 hex "
                         "characters") from None
    if len(key) != KEY_BYTES:
        raise UsageError(f"{path}: not a DICOM pseudonym key ({len(key)} bytes, expected {KEY_BYTES})")
    if path.stat().st_mode & 0o077:
        print(f"warning: {path} is readable by other users; chmod 600 it (anyone who has the key can "
              "recompute the pseudonyms of known patients)", file=sys.stderr)
    return key


class Pseudonyms:
    """HMAC-SHA-256 pseudonyms under one key. ``origin``: the key's file, for the audit line."""

    def __init__(self, key: bytes, origin: Path) -> None:
        self._key, self.origin = key, origin
        self.created = False  # made by this run (on first use)

    @classmethod
    def load(cls, key_file: Path | None = None, create: bool = True) -> Pseudonyms:
        """The key of ``key_file``, else this installation's (created on first use, with a warning, unless
        not ``create``: then a missing key is a :class:`UsageError`)."""
        path = key_file if key_file is not None else key_path()
        created = False
        if key_file is None and not path.exists():
            if not create:
                raise UsageError(f"no DICOM pseudonym key at {path} yet: python -m study.data key --create makes "
                                 "one; if this project has one, copy it there (mode 0600) or give --key-file")
            created = _create_key(path)
        keys = cls(read_key(path), path)
        keys.created = created
        return keys

    def __repr__(self) -> str:  # never the key
        return f"Pseudonyms(origin={str(self.origin)!r}, fingerprint={self.fingerprint!r})"

    def _mac(self, label: str, value: str) -> bytes:
        return hmac.new(self._key, f"{label}\x00{value}".encode(), hashlib.sha256).digest()

    @property
    def fingerprint(self) -> str:
        """8 hex characters that tell two keys apart (two machines print the same one when they share a key)."""
        return self._mac("fingerprint", "").hex()[:8]

    def patient(self, patient_id: str, issuer: str = "") -> str:
        return self._mac("patient", f"{issuer}\x00{patient_id}").hex()[:PATIENT_CHARS]

    def uid(self, uid: str) -> str:
        """``2.25.<int>`` (PS3.5 B.2) of a version-4 UUID made of the keyed hash's first 16 bytes."""
        return f"2.25.{uuid.UUID(bytes=self._mac('uid', uid)[:16], version=4).int}"

    def clip(self, value: str) -> str:
        return self._mac("clip", value).hex()[:CLIP_CHARS]
