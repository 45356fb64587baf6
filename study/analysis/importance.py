"""Hyperparameter importance with Optuna's evaluators.

``storage_importances``: per method, straight from the study's own Optuna storage
(``STORAGE/NAME/optuna.db``, one Optuna study per method, the exact distributions the searcher used,
each trial's best-epoch value). ``param_importance``: on an in-memory study rebuilt from
trials.parquet (studies from before optuna.db, and the cross-method view where ``method`` itself is
a parameter): the finished trials are re-created with ``optuna.trial.create_trial``; distributions
are inferred from the values seen (floats spanning more than a decade get a log scale). Each trial
carries only the keys its method searches (its conditional sub-space), plus ``method`` when the
study mixes methods. The evaluator is PED-ANOVA, Optuna's default: unlike fANOVA it scores
conditional parameters (GradNorm's alpha exists only in GradNorm trials) and needs no scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from study.analysis.loading import OBJECTIVE, method_hyperparameters
from study.store.folder import OPTUNA_DB
from study.store.trials import plain

MIN_TRIALS = 3
EVALUATOR = "PED-ANOVA (Optuna's default importance evaluator)"


@dataclass
class Importance:
    values: dict[str, float] = field(default_factory=dict)  # parameter -> importance (sums to 1)
    evaluator: str = EVALUATOR
    n_trials: int = 0
    note: str = ""  # why there are no values, when there are none


def infer_distribution(values: pd.Series) -> BaseDistribution | None:
    """A distribution covering ``values``; None when they hold a single distinct value (nothing to learn)."""
    v = values.dropna()
    if v.astype(str).nunique() < 2:
        return None
    if v.map(lambda x: isinstance(x, (bool, np.bool_, str))).any():
        return CategoricalDistribution(sorted({plain(x) for x in v}, key=str))
    x = v.astype(float).to_numpy()
    if np.all(np.equal(np.mod(x, 1), 0)) and pd.api.types.is_integer_dtype(v):
        return IntDistribution(int(x.min()), int(x.max()))
    lo, hi = float(x.min()), float(x.max())
    return FloatDistribution(lo, hi, log=lo > 0 and hi / lo > 10)


def param_importance(trials: pd.DataFrame, method_params: dict[str, list[str]] | None = None,
                     objective: str = OBJECTIVE) -> Importance:
    """Importances of the searched hyperparameters (and of ``method``) for ``objective`` (maximised).

    ``method_params``: method -> the keys its trials searched (default: the keys that vary among them).
    """
    ok = trials[(trials["status"] == "finished") & ~trials["is_repeat"] & trials[objective].notna()]
    ok = ok[np.isfinite(ok[objective].astype(float))]
    if len(ok) < MIN_TRIALS:
        return Importance(n_trials=len(ok), note=f"Hyperparameter importance needs at least {MIN_TRIALS} finished "
                                                 f"trials with an objective; this study has {len(ok)}.")
    keys = {m: (method_params or {}).get(m) or method_hyperparameters(ok, m) for m in ok["method"].unique()}
    columns = sorted({k for ks in keys.values() for k in ks})
    dists: dict[str, BaseDistribution] = {}
    for col in columns:
        d = infer_distribution(ok[col])
        if d is not None:
            dists[col] = d
    if ok[objective].astype(float).nunique() < 2:
        return Importance(n_trials=len(ok), note=f"Hyperparameter importance: every finished trial has the same "
                                                 f"objective ({float(ok[objective].iloc[0]):.4g}), so nothing "
                                                 "distinguishes one setting from another.")
    if ok["method"].nunique() > 1:
        dists["method"] = CategoricalDistribution(sorted(ok["method"].unique()))
    if not dists:
        return Importance(n_trials=len(ok), note="Hyperparameter importance: no hyperparameter took more than one "
                                                 "value among the finished trials.")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line in the CLI's output
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for _, row in ok.iterrows():
        params = {k: plain(row[k]) for k in (*keys[row["method"]], "method") if k in dists}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params}, value=float(row[objective])))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study)
    except Exception as err:  # an evaluator's limitation on a tiny study is a note, not a crash
        return Importance(n_trials=len(ok), note=f"Hyperparameter importance could not be computed "
                                                 f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).")
    values = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    return Importance(values=values, n_trials=len(ok))


def storage_importances(study_dir: str | Path) -> dict[str, Importance]:
    """Method -> importances of its searched hyperparameters for its first objective, read from the
    study's ``optuna.db`` (empty when the study has none). Completed trials only (failed ones have no value)."""
    db = Path(study_dir) / OPTUNA_DB
    if not db.is_file():
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
        out = {}
        for summary in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if len(done) < MIN_TRIALS:
                out[summary.study_name] = Importance(n_trials=len(done), note=(
                    f"Hyperparameter importance needs at least {MIN_TRIALS} completed trials; "
                    f"{summary.study_name} has {len(done)}."))
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    values = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
            except Exception as err:  # an evaluator's limitation on a tiny study is a note, not a crash
                out[summary.study_name] = Importance(n_trials=len(done), note=(
                    f"Hyperparameter importance could not be computed ({type(err).__name__}: "
                    f"{str(err).splitlines()[0][:200]})."))
                continue
            out[summary.study_name] = Importance(
                values={k: float(v) for k, v in values.items() if math.isfinite(v)}, n_trials=len(done))
        return out
    finally:
        optuna.logging.set_verbosity(verbosity)
