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

Direction: given a ``target``, PED-ANOVA ranks what puts a trial among the LOWEST target values,
whatever the study's direction (optuna/importance/_ped_anova/evaluator.py sets ``is_lower_better``
when a target is given). Every call here therefore goes through ``objective_importances``, which
negates a maximised objective: without it a maximised objective's ranking was of what makes trials
worst. A multi-objective study gets each objective's own direction.

Reliability: PED-ANOVA compares the top ``TARGET_QUANTILE`` (10 %) of trials with all of them, and
Optuna's documentation advises at least 5 trials in that top quantile; below ``RELIABLE_TRIALS``
completed trials the result carries a ``caution`` that the report shows next to the figure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from study.analysis.loading import OBJECTIVE, method_hyperparameters
from study.analysis.stats import spearman
from study.store.folder import OPTUNA_DB
from study.store.trials import plain
from trainables.wording import counted

MIN_TRIALS = 3
EVALUATOR = "PED-ANOVA (Optuna's default importance evaluator)"
TARGET_QUANTILE = 0.1  # PED-ANOVA's default target_quantile: what puts a trial in the top 10 %
MIN_TOP_TRIALS = 5  # Optuna's PedAnovaImportanceEvaluator docs: "at least 5 trials above target_quantile"
# The fewest completed trials whose top 10 % (ceil(0.1 n), Optuna's _QuantileFilter) holds 5 trials:
# ceil(0.1 * 41) = 5, ceil(0.1 * 40) = 4. Below it the ranking rests on 1-4 trials and is flagged unreliable.
RELIABLE_TRIALS = 41


@dataclass
class Importance:
    values: dict[str, float] = field(default_factory=dict)  # parameter -> importance (sums to 1)
    evaluator: str = EVALUATOR
    n_trials: int = 0
    note: str = ""  # why there are no values, when there are none
    caution: str = ""  # why the values are not to be trusted (too few trials), when they are not
    # parameter -> Spearman's rho of its value with the objective, signed so that > 0 means higher values went with
    # better trials (``better_when_higher``): importance says that a parameter mattered, this which way
    directions: dict[str, float] = field(default_factory=dict)


def top_trials(n_trials: int) -> int:
    """How many of ``n_trials`` PED-ANOVA's top quantile holds (Optuna's _QuantileFilter: ceil(q * n))."""
    return math.ceil(TARGET_QUANTILE * n_trials)


def caution(n_trials: int, scope: str = "") -> str:
    """The report's warning for a ranking from fewer than ``RELIABLE_TRIALS`` trials ("" from enough)."""
    if n_trials >= RELIABLE_TRIALS:
        return ""
    top = top_trials(n_trials)
    return (f"Hyperparameter importance{' ' + scope if scope else ''} is unreliable: it rests on {n_trials} "
            f"completed trials, and PED-ANOVA ranks what puts a trial in the top {TARGET_QUANTILE:.0%} of them "
            f"({counted(top, 'trial')} here; Optuna advises at least {MIN_TOP_TRIALS}, i.e. "
            f"{RELIABLE_TRIALS} or more trials). Read the ranking as a hint, not a finding.")


def minimised_target(direction: StudyDirection, index: int = 0) -> Callable[[FrozenTrial], float]:
    """Objective ``index`` as a PED-ANOVA ``target``: lower is better, so a maximised objective is negated."""
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    return lambda t: sign * t.values[index]


def objective_importances(study: optuna.Study, objective: int = 0) -> dict[str, float]:
    """PED-ANOVA importances for reaching the best values of ``study``'s objective ``objective`` (its own
    direction, single- or multi-objective study alike); non-finite values left out. Raises what Optuna raises."""
    target = minimised_target(study.directions[objective], objective)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "computes the importances ... to achieve low target values": handled
        values = optuna.importance.get_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(target_quantile=TARGET_QUANTILE), target=target)
    return {k: float(v) for k, v in values.items() if math.isfinite(v)}


def better_when_higher(study: optuna.Study, objective: int = 0) -> dict[str, float]:
    """Parameter -> Spearman's rho between its values and objective ``objective`` over ``study``'s completed trials,
    negated for a minimised objective (> 0: higher values went with better trials); numeric parameters only,
    each over the trials that have it (a conditional one over its own)."""
    sign = -1.0 if study.directions[objective] == StudyDirection.MINIMIZE else 1.0
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    value = pd.Series([t.values[objective] for t in done], dtype=float)
    out = {}
    for name in sorted({k for t in done for k in t.params}):
        if any(isinstance(t.distributions.get(name), CategoricalDistribution) for t in done):
            continue
        param = pd.Series([t.params.get(name, math.nan) for t in done], dtype=float)
        rho = spearman(param, value)
        if math.isfinite(rho):
            out[name] = sign * rho
    return out


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
                     objective: str = OBJECTIVE, direction: str = "maximize") -> Importance:
    """Importances of the searched hyperparameters (and of ``method``) for reaching the best values of
    ``objective`` (``direction``: "maximize", the default objective's, or "minimize", e.g. a cost).

    ``method_params``: method -> the keys its trials searched (default: the keys that vary among them). Trials of
    a --folds study (a ``fold`` column) are ranked on their objective minus their fold's median (``fold_centred``).
    """
    ok = trials[(trials["status"] == "finished") & ~trials["is_repeat"] & trials[objective].notna()]
    ok = ok[np.isfinite(ok[objective].astype(float))]
    if "fold" in ok and ok["fold"].nunique() > 1:  # each fold's validation patients set its own level
        value = ok[objective].astype(float)
        ok = ok.assign(**{objective: value - value.groupby(ok["fold"]).transform("median")})
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
        study = optuna.create_study(direction=direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for _, row in ok.iterrows():
        params = {k: plain(row[k]) for k in (*keys[row["method"]], "method") if k in dists}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params}, value=float(row[objective])))
    try:
        values = objective_importances(study)
    except Exception as err:  # an evaluator's limitation on a tiny study is a note, not a crash
        return Importance(n_trials=len(ok), note=f"Hyperparameter importance could not be computed "
                                                 f"({type(err).__name__}: {str(err).splitlines()[0][:200]}).")
    scope = "across methods" if ok["method"].nunique() > 1 else ""
    return Importance(values=values, n_trials=len(ok), caution=caution(len(ok), scope))


def storage_importances(study_dir: str | Path, objective: int = 0) -> dict[str, Importance]:
    """Method -> importances of its searched hyperparameters for reaching the best values of its objective
    ``objective`` (0: the first, the report's; in that objective's own direction), read from the study's
    ``optuna.db`` (empty when the study has none). Completed trials only (failed ones have no value)."""
    db = Path(study_dir) / OPTUNA_DB
    if not db.is_file():
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
        out = {}
        for name, study in method_studies(storage).items():
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if len(done) < MIN_TRIALS:
                out[name] = Importance(n_trials=len(done), note=(
                    f"Hyperparameter importance needs at least {MIN_TRIALS} completed trials; "
                    f"{name} has {len(done)}."))
                continue
            try:
                values = objective_importances(study, objective)
            except Exception as err:  # an evaluator's limitation on a tiny study is a note, not a crash
                out[name] = Importance(n_trials=len(done), note=(
                    f"Hyperparameter importance could not be computed ({type(err).__name__}: "
                    f"{str(err).splitlines()[0][:200]})."))
                continue
            out[name] = Importance(values=values, n_trials=len(done), caution=caution(len(done), f"within {name}"),
                                   directions=better_when_higher(study, objective))
        return out
    finally:
        optuna.logging.set_verbosity(verbosity)


def method_studies(storage: optuna.storages.BaseStorage) -> dict[str, optuna.Study]:
    """Method -> its Optuna study. A published --folds study holds one per fold and method, named
    ``fold-k/<method>`` (study/publish.py): each method's folds are pooled into one in-memory study whose values are
    centred on their fold's median (``fold_centred``), so that the ranking is of configurations, not of which
    fold's validation patients were easier."""
    studies: dict[str, optuna.Study] = {}
    folds: dict[str, list[optuna.Study]] = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        head, _, method = summary.study_name.partition("/")
        if head.startswith("fold-") and head[5:].isdigit() and method:
            folds.setdefault(method, []).append(study)
        else:
            studies[summary.study_name] = study
    for method, parts in folds.items():
        pooled = optuna.create_study(directions=parts[0].directions)
        for part in parts:
            done = part.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            for trial, values in zip(done, fold_centred([t.values for t in done]), strict=True):
                pooled.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                           values=values, user_attrs=trial.user_attrs))
        studies[method] = pooled
    return studies


def fold_centred(values: list[list[float]]) -> list[list[float]]:
    """One fold's trials' objective values (n_trials, n_objectives) minus the fold's median of each objective: the
    folds' validation patients differ, and with them every trial's level; within a fold, trials compare."""
    arr = np.asarray(values, dtype=float)
    return (arr - np.median(arr, axis=0)).tolist() if len(arr) else []
