"""``--resume`` checks what it resumes: the command must ask for the study its folder holds.

A resumed study keeps its trials, re-runs and test scores; a resume that changed what is measured (another
seed, fold count, split, data set, method list, budget or ``--set``) would re-deal the patients, mix splits in
the headline and let test patients train. So every setting that can change a result is compared with the
study's ``manifest.json`` (written when the study began, study/store/manifest.py), and any difference is one
``error:`` line naming the flag and both values, before anything runs. Settings that cannot change a result
(``--max-concurrent``, ``--cpus-per-trial``, ``--address``, ``--storage``, the dashboard's, ``--mlflow``) stay
free.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from study.errors import UsageError

MANIFEST = "manifest.json"
# StudySettings field -> the flag that sets it (each can change what the study measures)
BINDING = {"space": "--space", "methods": "--methods", "samples": "--samples", "epochs": "--epochs",
           "seed": "--seed", "folds": "--folds", "objective": "--objective", "scheduler": "--scheduler",
           "repeat_best": "--repeat-best", "seeds": "--seeds", "test": "--test", "costs": "--costs"}
# a study that began without re-runs (no --repeat-best, no --folds) may add them on a resume: nothing they
# measure exists yet, and the search they re-run is the one the study began
EXTENSIBLE = ("repeat_best", "seeds")
# config keys (StudySettings.config) that a flag above or a named flag sets; any other is a --set KEY
CONFIG_FLAGS = {"data.source": "--data", "data.split": "--split", "data.imgsz": "--imgsz", "train.epochs": "--epochs",
                "train.seed": "--seed", "data.split_seed": "--seed", "data.folds": "--folds"}
FREE_CONFIG = ("data.fold",)  # which fold runs now: the study's loop, not the user's choice
# config keys a study from before they were recorded did not write, with the value it used in their place
IMPLIED = {"data.split_seed": lambda settings: settings.get("seed")}


def recorded(study_dir: Path) -> dict[str, Any] | None:
    """The manifest a study wrote when it began (or, for a folds study from before, its first fold's), or None."""
    for path in (study_dir / MANIFEST, study_dir / "fold-0" / MANIFEST):
        if path.is_file():
            return json.loads(path.read_text())
    return None


def differences(manifest: dict[str, Any], settings: Any) -> list[tuple[str, Any, Any]]:
    """``(flag, recorded value, new value)`` for every result-changing setting that differs, flags once each."""
    old = manifest.get("settings", {})
    new = json.loads(json.dumps(dataclasses.asdict(settings)))  # as the manifest stores it (lists, not tuples)
    out: dict[str, tuple[str, Any, Any]] = {}
    no_reruns_yet = not old.get("repeat_best") and not old.get("folds")
    for field, flag in BINDING.items():
        if field in EXTENSIBLE and no_reruns_yet:
            continue
        if field in old and old[field] != new[field]:
            out.setdefault(flag, (flag, old[field], new[field]))
    if "gpus_per_trial" in old and (old["gpus_per_trial"] > 0) != (new["gpus_per_trial"] > 0):  # the device
        out["--gpus-per-trial"] = ("--gpus-per-trial", old["gpus_per_trial"], new["gpus_per_trial"])
    before = {**{k: implied(old) for k, implied in IMPLIED.items()}, **old.get("config", {})}
    now = new["config"]
    for key in sorted(set(before) | set(now)):
        if key in FREE_CONFIG or before.get(key) == now.get(key):
            continue
        flag = CONFIG_FLAGS.get(key, f"--set {key}")
        out.setdefault(flag, (flag, before.get(key, "(not given)"), now.get(key, "(not given)")))
    return list(out.values())


def check_resume(study_dir: Path, settings: Any, fingerprint: str | None = None) -> None:
    """A UsageError (one line) when ``settings`` or the data's ``fingerprint`` differ from what the study at
    ``study_dir`` began with; a warning when the study has no manifest to compare (one interrupted before
    this check existed)."""
    manifest = recorded(study_dir)
    if manifest is None:
        if fingerprint is not None:  # said once (the check runs before and after the data is read)
            return
        print(f"warning: --resume: {study_dir} has no {MANIFEST} (a study interrupted before it was written "
              "at the start): what it resumes cannot be checked against what it began", file=sys.stderr)
        return
    found = differences(manifest, settings)
    if fingerprint is not None and manifest.get("dataset_fingerprint") not in (None, fingerprint):
        found.append(("--data", f"data fingerprint {manifest['dataset_fingerprint'][:12]}",
                      f"{fingerprint[:12]} (the data set changed)"))
    if found:
        said = "; ".join(f"{flag} {_shown(old)} when it began, {_shown(new)} now" for flag, old, new in found)
        raise UsageError(f"--resume {study_dir.name}: {said}; a resume must measure what the study began "
                         f"measuring: repeat its command ({MANIFEST}: command) or start another --name")


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
