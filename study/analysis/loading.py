"""A study's Parquet files as the report needs them: trials with a ``method`` label, epochs, manifest.

A method is the architecture plus, for the shared backbone, its balancer: ``shared/gradnorm``,
``dual``, ``det_only``, ``cls_only``. Colours follow a fixed method order so that the same method
has the same colour in every report.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.columns import ACCURACY, COST, OBJECTIVE  # noqa: F401 (OBJECTIVE: read from here by the figures)
from study.analysis.common import hover_texts
from study.errors import UsageError
from study.store.selection import methods_of
from study.store.trials import read_trials_file
from trainables.config import TrialConfig

METHOD_ORDER = [
    "shared/gradnorm", "dual", "shared/equal", "shared/static", "shared/uncertainty", "shared/dwa",
    "shared/pcgrad", "shared/cagrad", "det_only", "cls_only",
]
SINGLE_TASK = ("det_only", "cls_only")
# Plotly's D3 palette, one colour per method in METHOD_ORDER, then grey-ish extras
PALETTE = ["#d62728", "#1f77b4", "#7f7f7f", "#bcbd22", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#2ca02c", "#ff7f0e", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
SPACE_DRAWS = 40  # define-by-run draws per space: enough to visit every method and conditional branch
# Config keys that vary between trials for a reason other than the search (seeds of --repeat-best)
NOT_HYPERPARAMETERS = ("train.seed",)


def method_of(arch: str, balancer: str) -> str:
    return f"shared/{balancer}" if arch == "shared" else str(arch)


@dataclass
class Study:
    """What the report is built from. ``trials`` gains ``method`` and ``is_repeat`` columns."""

    path: Path
    trials: pd.DataFrame
    epochs: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # problems with the files themselves
    # method -> the hyperparameters it searched (varied among its trials); a method with a single
    # trial varies nothing, so it gets the study-wide list
    method_params: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.method_params = searched_params(self.trials)
        self._hover: dict[str, str] | None = None

    @property
    def hover(self) -> dict[str, str]:
        """trial_id -> hover text (built once)."""
        if self._hover is None:
            self._hover = hover_texts(self.trials, self.method_params)
        return self._hover

    @property
    def name(self) -> str:
        return self.path.name

    def costs(self) -> pd.DataFrame:
        """costs.parquet (every fold's rows in a folds study: the chosen configurations' costs measured alone),
        or an empty table."""
        from study.heldout.reruns import COSTS_FILE  # (the re-runs write it; imported here only when read)

        file = self.path / COSTS_FILE
        return pd.read_parquet(file) if file.is_file() else pd.DataFrame()

    @property
    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "finished"]

    def methods(self) -> list[str]:
        """The methods present, in the fixed order."""
        return order_methods(self.trials["method"].unique())

    def colors(self) -> dict[str, str]:
        return method_colors(self.methods())


def order_methods(methods: Any) -> list[str]:
    present = [str(m) for m in methods]
    known = [m for m in METHOD_ORDER if m in present]
    return known + sorted(set(present) - set(known))


def method_colors(methods: list[str]) -> dict[str, str]:
    extras = [m for m in methods if m not in METHOD_ORDER]
    colors = {m: PALETTE[i] for i, m in enumerate(METHOD_ORDER)}
    for i, m in enumerate(extras):
        colors[m] = PALETTE[(len(METHOD_ORDER) + i) % len(PALETTE)]
    return {m: colors[m] for m in methods}


def prepare_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Add ``method`` and ``is_repeat``; make sure every column the report reads exists (NaN if absent)."""
    df = trials.copy()
    for col in ("arch", "balancer.name", "status", "repeat_of", "trial_id", "error"):
        if col not in df:
            df[col] = ""
    df["repeat_of"] = df["repeat_of"].fillna("").astype(str)
    df["error"] = df["error"].fillna("").astype(str)
    df["method"] = methods_of(df)  # shared@K/<balancer> where a trial set model.shared_stages
    df["is_repeat"] = df["repeat_of"] != ""
    for col in (*ACCURACY, *COST, "epochs_run", "best_epoch", "time.total_s"):
        if col not in df:
            df[col] = math.nan
    return df.reset_index(drop=True)


def load_study(path: str | Path) -> Study:
    """Read ``STORAGE/NAME`` (or a folder ``study.publish`` wrote, whose trials.parquet and epochs.parquet pool a
    --folds study's folds with a ``fold`` column). A folder without ``trials.parquet`` is a usage error (one line),
    unless it has ``test_runs.parquet``: then the trial rows are derived from its re-runs (``trials_from_reruns``,
    with a note saying so)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UsageError(f"{path}: no such folder; give the study folder STORAGE/NAME that study.run wrote")
    folds = sorted(path.glob("fold-*/trials.parquet"), key=lambda p: int(p.parent.name.partition("-")[2] or 0))
    if (path / "folds.parquet").is_file() and folds:  # a --folds study: each fold's own files, pooled
        notes = [folds_note(len(folds))]
        trials = pd.concat([_read_table(p, required=True).assign(fold=k) for k, p in enumerate(folds)],
                           ignore_index=True)
        parts = [_read_table(p.parent / "epochs.parquet", notes=notes) for p in folds]
        epochs = pd.concat([e for e in parts if e is not None], ignore_index=True) if any(
            e is not None for e in parts) else pd.DataFrame(columns=["trial_id", "epoch"])
    else:
        notes = []
        derived = not (path / "trials.parquet").is_file() and (path / RERUNS_FILE).is_file()
        trials = None if derived else _read_table(path / "trials.parquet", required=True)
        epochs = _read_table(path / "epochs.parquet", notes=notes)
        if epochs is None:
            epochs = pd.DataFrame(columns=["trial_id", "epoch"])
        if trials is not None and "fold" in trials and (path / "folds.parquet").is_file():  # published: pooled
            notes.append(folds_note(trials["fold"].nunique()))
    manifest: dict[str, Any] = {}
    if (path / "manifest.json").is_file():
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            notes.append("manifest.json is unreadable: versions and command line not shown.")
    if trials is None:  # a folder that kept its re-runs but not the study's own trials.parquet
        trials = trials_from_reruns(_read_table(path / RERUNS_FILE, required=True), epochs)
        notes.append(DERIVED_NOTE)
    return Study(path=path, trials=prepare_trials(trials), epochs=epochs, manifest=manifest, notes=notes)


def folds_note(k: int) -> str:
    return (f"A study of {k} patient folds: the trials and epochs below pool every fold's own search and re-runs "
            "(column fold); the headline and the verdict are held-out, fold by fold.")


RERUNS_FILE = "test_runs.parquet"  # study/analysis/headline.py RUNS_FILE (imported from here, not there: no cycle)
RERUN_KEYS = ("trial_id", "repeat_of", "status", "best_epoch", "train.seed", "fold")
DERIVED_NOTE = (
    "This folder has no trials.parquet (the study's own was not kept): the trial rows below are derived from "
    "test_runs.parquet, one per re-run (its method, seed, fold, status and best epoch), with each re-run's "
    "validation scores at that best epoch taken from epochs.parquet; what neither file holds (hyperparameters, "
    "per-trial costs, losses, task weights) is left empty.")


def trials_from_reruns(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One trials.parquet-like row per re-run of ``test_runs.parquet``: what the row itself says (trial id, what it
    repeats, method as ``arch`` / ``balancer.name`` / ``model.shared_stages``, seed, fold, status, best epoch) and,
    from ``epochs.parquet``, ``epochs_run`` and every ``val.*`` value of its best epoch as ``best.val.*``. Nothing
    else is filled in: a value neither file holds stays absent (NaN in the report)."""
    from search_spaces.registry import parse_method

    val = [c for c in epochs.columns if str(c).startswith("val.")]
    keys = ["trial_id", "fold"] if "fold" in epochs and "fold" in runs else ["trial_id"]
    rows = []
    for run in runs.to_dict("records"):
        row: dict[str, Any] = {k: run[k] for k in RERUN_KEYS if k in run}
        row.update(parse_method(str(run.get("method", ""))))
        mine = epochs[(epochs[keys] == pd.Series({k: run.get(k) for k in keys})).all(axis=1)] if len(epochs) else epochs
        if len(mine):
            row["epochs_run"] = int((mine["status"] != "diverged").sum()) if "status" in mine else len(mine)
            at_best = mine[mine["epoch"] == run.get("best_epoch")]
            if len(at_best):
                row.update({f"best.{c}": at_best.iloc[0][c] for c in val})
        rows.append(row)
    out = pd.DataFrame(rows)
    if "repeat_of" in out:  # every row is a re-run: one with an empty repeat_of would read as a searched trial
        out["repeat_of"] = out["repeat_of"].fillna("").astype(str).where(lambda s: s != "", "re-run")
    return out


def _read_table(path: Path, required: bool = False, notes: list[str] | None = None) -> pd.DataFrame | None:
    """trials.parquet (``required``: a UsageError when missing or unreadable) or epochs.parquet (a note)."""
    if not path.is_file():
        if required:
            raise UsageError(f"{path.parent}: no {path.name} here; give the study folder STORAGE/NAME "
                             "(the one `python -m study.run` printed)")
        if notes is not None:
            notes.append(f"{path.name} is missing: no learning curves, weight or cosine trajectories.")
        return None
    try:
        return read_trials_file(path) if path.name == "trials.parquet" else pd.read_parquet(path)
    except Exception as err:  # a truncated or foreign file
        if required:
            raise UsageError(f"{path}: not a readable Parquet file ({type(err).__name__}); "
                             "re-run or --resume the study to rewrite it") from None
        if notes is not None:
            notes.append(f"{path.name} is unreadable ({type(err).__name__}): no per-epoch figures.")
        return None


@functools.cache
def config_keys() -> tuple[str, ...]:
    """TrialConfig's flat keys in order, every registered balancer's hyperparameters included (what a
    trials.parquet of any space may carry). Loads the balancer registry, and with it torch."""
    return tuple(TrialConfig.flat_keys())


def hyperparameters(trials: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between the searched (non-repeat) trials, in config order."""
    searched = trials[~trials["is_repeat"]] if "is_repeat" in trials else trials
    keys = [k for k in config_keys() if k in searched and k not in NOT_HYPERPARAMETERS]
    distinct = searched[keys].nunique(dropna=True)  # one pass over the columns
    return [k for k in keys if distinct[k] > 1]


def method_hyperparameters(trials: pd.DataFrame, method: str) -> list[str]:
    """The hyperparameters that vary within one method's searched trials (its own sub-space)."""
    return [k for k in hyperparameters(trials[trials["method"] == method]) if k not in ("arch", "balancer.name")]


@functools.cache
def space_keys(space: str) -> dict[str, tuple[str, ...]] | None:
    """method -> the config keys search space ``space`` suggests for it, or None for an unknown space.

    Found by running the space's define-by-run on an in-memory Optuna study with a random sampler
    (a fraction of a second): exact where the data alone cannot tell, e.g. a method with one trial,
    or GradNorm's alpha that other methods carry at its default value.
    """
    import optuna

    from search_spaces import registry

    if space not in registry.SPACES:
        return None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        out: dict[str, set[str]] = {}
        methods = registry.methods(space)
        for i in range(SPACE_DRAWS):
            trial = study.ask()
            constants = registry.define_with_base(trial, space, {}, methods[i % len(methods)])
            if "arch" in constants:
                method = method_of(constants["arch"], constants.get("balancer.name", "equal"))
                out.setdefault(method, set()).update(trial.params)
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(verbosity)
    order = {k: i for i, k in enumerate(config_keys())}
    return {m: tuple(sorted(keys, key=lambda k: order.get(k, len(order)))) for m, keys in out.items()}


def searched_params(trials: pd.DataFrame) -> dict[str, list[str]]:
    """method -> the hyperparameters its trials searched: from the search space(s) named in the
    ``space`` column when known, else the keys that vary among the method's trials (falling back to
    the study-wide ones for a method with a single trial)."""
    spaces = [str(s) for s in trials["space"].dropna().unique()] if "space" in trials else []
    known = [space_keys(s) for s in spaces]
    study_wide = [k for k in hyperparameters(trials) if k not in ("arch", "balancer.name")]
    out = {}
    for m in trials["method"].unique():
        from_space = sorted({k for keys in known if keys and m in keys for k in keys[m]},
                            key=lambda k: config_keys().index(k) if k in config_keys() else 999)
        out[str(m)] = from_space or method_hyperparameters(trials, m) or study_wide
    return out
