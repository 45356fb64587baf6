"""What a checkpoint is on disk: its file name, its format version, and why a file is not one (no torch, no
Ray: both sides read it).

The engine writes the state (``trainables/engine.py``), the Ray trainable saves it in each of Tune's
``checkpoint_<index>/`` folders, ``study.train`` beside its results, and every reader in ``study/``
finds it by this name.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1  # bumped when a state's keys change meaning; readers refuse other formats


def unreadable_because(path: str | Path, err: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` raised ``err``, in a few words of our own.

    Torch's own message is a paragraph of advice on ``weights_only`` (re-running with ``weights_only=False``,
    which this tool never does: that would run whatever code the file holds); cut at some length, it read as
    half a sentence. Used by every reader of a checkpoint or weights file, so all say it the same way."""
    if not zipfile.is_zipfile(path):  # every torch.save since PyTorch 1.6 writes a zip archive
        return "the file is damaged, cut short, or not a PyTorch file at all"
    if isinstance(err, pickle.UnpicklingError):  # a whole archive whose pickle names more than tensors
        return "it holds Python objects besides tensors, which this tool never unpickles (that could run code)"
    return f"the PyTorch archive is damaged ({type(err).__name__})"
