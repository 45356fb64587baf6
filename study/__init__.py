"""The commands a user runs (``python -m study.run``, ``study.train``, ``study.evaluate``, ...) and the rooms
they use: ``tuning/`` (the study on Ray Tune), ``heldout/`` (costs, held-out scores, folds, verdict),
``store/`` (the files a study leaves), ``media/`` (DICOM, video, frames), ``analysis/`` (the report) and
``benchmarks/``.

Modules that moved keep answering at their old paths, because Tune pickles some of their classes and
functions into a study's ``tuner.pkl`` and searcher state: a study made before the move still resumes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

# old module path -> where it lives now; only modules whose objects Tune pickles into a study folder
MOVED = {
    "study.runner": "study.tuning.search",  # trial_folder (TuneConfig.trial_dirname_creator)
    "study.searchers": "study.tuning.searchers",  # PerMethodSearch
    "study.schedulers": "study.tuning.schedulers",  # PerMethodASHA
    "study.recorder": "study.tuning.recorder",  # ResultsRecorder
    "study.keep_best": "study.tuning.keep_checkpoints",  # KeepBestCheckpoints
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module that replaced it (the same module object, not a copy)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its new name


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())  # before any finder that might still see an old file
