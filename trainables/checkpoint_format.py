"""What a checkpoint is on disk: its file name and its format version (no torch, no Ray: both sides read it).

The engine writes the state (``trainables/engine.py``), the Ray trainable saves it in each of Tune's
``checkpoint_<index>/`` folders, ``study.train`` beside its results, and every reader in ``study/``
finds it by this name.
"""

from __future__ import annotations

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1  # bumped when a state's keys change meaning; readers refuse other formats
