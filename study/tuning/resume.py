"""``--resume`` checks what it resumes: the command must ask for the study its folder holds.

A resumed study keeps its trials, re-runs and test scores; a resume that changed what is measured (another
seed, fold count, split, data set, method list, budget or ``--set``) would re-deal the patients, mix splits in
the headline and let test patients train. So every setting that can change a result is compared with the
study's ``manifest.json`` (written when the study began, study/store/manifest.py), and any difference is one
``error:`` line naming the flag and both values, before anything runs. Settings that cannot change a result
(``--max-concurrent``, ``--cpus-per-trial``, ``--address``, ``--storage``, the dashboard's, ``--mlflow``,
``--allow-code-change``) stay free.

A result is pinned to its code and its numerics too (``check_resume`` with the ``base`` config now built):

- **code**: each sitting records ``code_state`` (study/store/manifest.py): its git commit, whether the project's
  code (study/, trainables/, search_spaces/, pyproject.toml; not README, docs/ or tests/) had uncommitted
  changes, and a hash of that code's files. A resume whose code hash differs from the LAST sitting's is
  refused, naming both commits: another commit that changed code, uncommitted changes made or undone, or other
  uncommitted changes on the same commit. The same code is accepted, however it got there: a study begun on a
  dirty tree resumes on that same dirty tree (its sittings say ``dirty``), and a commit that touched only docs
  is no change. ``--allow-code-change`` lets it go on: a warning, and ``allow_code_change`` in that sitting's
  entry of ``runs``; the next resume is compared with that sitting's code. The base config's keys follow the
  code: keys the code added or removed count as the code change; a key whose default value changed (one the
  command does not set) is refused with or without the flag, since the trials would run another configuration.
- **numerics**: the precision and memory format ``auto`` resolves to on the driver (``driver_numerics``) must be
  those the study recorded (``compute.resolved_on_driver``); no flag allows another (one verdict would mix bf16
  and fp32 re-runs).

A manifest from before these were recorded is compared on what it has (its top-level ``git_commit``); what
cannot be checked is said once as a ``warning:`` line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from study.errors import UsageError
from study.store.manifest import describe_code, driver_numerics, project_code_state

MANIFEST = "manifest.json"
# StudySettings field -> the flag that sets it (each can change what the study measures)
BINDING = {"space": "--space", "methods": "--methods", "samples": "--samples", "epochs": "--epochs",
           "seed": "--seed", "folds": "--folds", "objective": "--objective", "scheduler": "--scheduler",
           "grace_period": "--grace-period", "reduction_factor": "--reduction-factor",
           "repeat_best": "--repeat-best", "seeds": "--seeds", "test": "--test", "costs": "--costs"}
# a study that began without re-runs (no --repeat-best, no --folds) may add them on a resume: nothing they
# measure exists yet, and the search they re-run is the one the study began
EXTENSIBLE = ("repeat_best", "seeds")
# config keys (StudySettings.config) that a flag above or a named flag sets; any other is a --set KEY
CONFIG_FLAGS = {"data.source": "--data", "data.split": "--split", "data.imgsz": "--imgsz", "train.epochs": "--epochs",
                "train.seed": "--seed", "data.split_seed": "--seed", "data.folds": "--folds"}
FREE_CONFIG = ("data.fold",)  # which fold runs now: the study's loop, not the user's choice
# base config keys the study sets itself as it goes (which fold runs, the fingerprint of its test patients)
STUDY_KEYS = ("data.fold", "data.test_patients")
CODE_FLAG = "--allow-code-change"
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


def check_resume(study_dir: Path, settings: Any, fingerprint: str | None = None,
                 base: dict[str, Any] | None = None) -> None:
    """A UsageError (one line) when ``settings`` or the data's ``fingerprint`` differ from what the study at
    ``study_dir`` began with; a warning when the study has no manifest to compare (one interrupted before
    this check existed).

    With ``base`` (the base config now built; the check before the data is read): also the code, the base
    config's values and the resolved numerics (this module's docstring), each said in the same one line; what an
    old manifest cannot show is one ``warning:`` line, and a code change let through by ``--allow-code-change``
    another."""
    manifest = recorded(study_dir)
    if manifest is None:
        if fingerprint is not None:  # said once (the check runs before and after the data is read)
            return
        print(f"warning: --resume: {study_dir} has no {MANIFEST} (a study interrupted before it was written "
              "at the start): what it resumes cannot be checked against what it began", file=sys.stderr)
        return
    found = [f"{flag} {_shown(old)} when it began, {_shown(new)} now"
             for flag, old, new in differences(manifest, settings)]
    if fingerprint is not None and manifest.get("dataset_fingerprint") not in (None, fingerprint):
        found.append(f"--data data fingerprint {manifest['dataset_fingerprint'][:12]} when it began, "
                     f"{fingerprint[:12]} (the data set changed) now")
    code: list[str] = []
    unchecked: list[str] = []
    numerics = False
    if base is not None and not found:  # (a changed flag changes these too: said once, by its flag)
        now = json.loads(json.dumps(base))
        values, keys = base_differences(manifest, settings, now)
        found += values
        numerics_changed = numerics_difference(manifest, settings, base)
        numerics = numerics_changed is not None
        found += [numerics_changed] if numerics_changed else []
        code, unchecked = code_difference(manifest)
        code += keys
        if "base_config" not in manifest:
            unchecked.append("its base config")
        if "resolved_on_driver" not in manifest.get("compute", {}):
            unchecked.append("the precision and memory format it resolved")
    name = study_dir.name
    allowed = bool(getattr(settings, "allow_code_change", False))
    if found or (code and not allowed):
        said = "; ".join(found + code)
        why = []
        if found and not (numerics and len(found) == 1):
            why.append(f"a resume must measure what the study began measuring: repeat its command ({MANIFEST}: "
                       "command) or start another --name")
        if numerics:
            why.append(f"resume on a machine where auto resolves as it did, or start another --name ({CODE_FLAG} "
                       "does not cover numerics: one verdict would mix them)")
        if code and not allowed:
            why.append(f"its results would mix code versions: run the code it last ran{_checkout(manifest)}, "
                       f"or pass {CODE_FLAG} to resume anyway (recorded in {MANIFEST})")
        raise UsageError(f"--resume {name}: {said}; {'; '.join(why)}")
    if unchecked:
        print(f"warning: --resume {name}: its {MANIFEST} is from before sittings recorded their code and numerics, "
              f"so these cannot be checked: {', '.join(unchecked)}", file=sys.stderr)
    if code:
        print(f"warning: --resume {name}: {CODE_FLAG}: {'; '.join(code)}; this sitting's results come from other "
              f"code than the study's earlier ones ({MANIFEST}: runs, allow_code_change)", file=sys.stderr)


def last_sitting(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The latest entry of the manifest's ``runs`` that recorded its code, or None (a manifest from before)."""
    sittings = [r for r in manifest.get("runs", []) if r.get("code")]
    return sittings[-1] if sittings else None


def code_difference(manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(differences, unchecked)``: the code now against the code the study last ran (module docstring)."""
    now = project_code_state()
    last = last_sitting(manifest)
    if last is not None:
        if last["code"] == now["code"]:
            return [], []
        return [f"code {describe_code(last)} when it last ran, {describe_code(now)} now"], []
    began = str(manifest.get("git_commit") or "unknown")  # before sittings: "<sha>", "<sha>-dirty" or "unknown"
    commit = began.removesuffix("-dirty")
    if "unknown" not in (commit, now["commit"]) and commit != now["commit"]:
        return [f"code commit {commit[:12]} when it began, {describe_code(now)} now"], []
    if commit == now["commit"] and not began.endswith("-dirty") and now["dirty"] is False:
        return [], []  # one commit, clean then and now: the same code
    shown = began[:12] + ("-dirty" if began.endswith("-dirty") else "")
    return [], [f"its code beyond the commit (it began at {shown}, now {describe_code(now)})"]


def base_differences(manifest: dict[str, Any], settings: Any, now: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(changed values, added or removed keys)`` of the base config against the manifest's, over the keys the
    command does not set (those are ``differences``' to say) and the study's own (STUDY_KEYS)."""
    if "base_config" not in manifest:
        return [], []
    before = manifest["base_config"]
    given = set(manifest.get("settings", {}).get("config", {})) | set(getattr(settings, "config", {}))
    skip = given | set(STUDY_KEYS)
    values = [f"base config {k} {_shown(before[k])} when it began, {_shown(now[k])} now (a default the code changed)"
              for k in sorted(set(before) & set(now) - skip) if before[k] != now[k]]
    added, removed = sorted(set(now) - set(before) - skip), sorted(set(before) - set(now) - skip)
    keys = ([f"base config keys the code added: {', '.join(added)}"] if added else []) + \
        ([f"base config keys the code removed: {', '.join(removed)}"] if removed else [])
    return values, keys


def numerics_difference(manifest: dict[str, Any], settings: Any, base: dict[str, Any]) -> str | None:
    """The precision / memory format the driver resolves now against those recorded, or None when they agree (or
    nothing was recorded)."""
    last = last_sitting(manifest)
    before = (last or {}).get("numerics") or manifest.get("compute", {}).get("resolved_on_driver")
    if not before:
        return None
    now = driver_numerics(settings, base).as_state()
    old = (before.get("precision"), before.get("memory_format"))
    new = (now["precision"], now["memory_format"])
    if old == new:
        return None
    asked = f"train.precision={base.get('train.precision')}, train.memory_format={base.get('train.memory_format')}"
    return f"compute {'/'.join(map(str, old))} when it began, {'/'.join(new)} now ({asked} resolves otherwise here)"


def _checkout(manifest: dict[str, Any]) -> str:
    last = last_sitting(manifest) or {}
    commit = str(last.get("commit") or manifest.get("git_commit") or "unknown").removesuffix("-dirty")
    return "" if commit == "unknown" else f" (git checkout {commit[:12]})"


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
