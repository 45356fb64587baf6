"""Hyperparameter importance ranks what makes a trial GOOD, in each objective's own direction (issue 37).

The synthetic study: 60 trials, ``optim.lr`` and ``optim.weight_decay`` spread uniformly (a stratified grid,
randomly paired). The objective is built so that the TOP trials are decided by the learning rate alone and
the BOTTOM trials by the weight decay alone: an importance that ranks what helps puts ``optim.lr`` first;
one that mistakes the direction (PED-ANOVA given a ``target`` assumes it is minimised) puts
``optim.weight_decay`` first.
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from study.analysis.figures_hparams import importance_figure
from study.analysis.importance import (
    MIN_TOP_TRIALS,
    RELIABLE_TRIALS,
    Importance,
    better_when_higher,
    objective_importances,
    param_importance,
    storage_importances,
    top_trials,
)
from study.analysis.loading import OBJECTIVE, load_study
from tests.test_analysis_helpers import write_study

N = 60
LR = FloatDistribution(1e-4, 1e-1, log=True)
WD = FloatDistribution(0.01, 0.1)  # hi/lo < 10: a linear axis when re-inferred from trials.parquet


def _grid(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two uniform [0, 1) coordinates per trial: every 1/n stratum once, paired at random."""
    rng = np.random.default_rng(seed)
    u = (np.arange(n) + 0.5) / n
    return rng.permutation(u), rng.permutation(u)


def good_by_a_bad_by_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Top band (a > 0.8): decided by ``a`` alone; bottom band (b > 0.8, a <= 0.8): by ``b`` alone; else 0.5."""
    return np.where(a > 0.8, 0.9 + 0.1 * a, np.where(b > 0.8, 0.1 * (1.0 - b), 0.5))


def _params(a: float, b: float) -> dict[str, float]:
    return {"optim.lr": float(10 ** (-4 + 3 * a)), "optim.weight_decay": float(0.01 + 0.09 * b)}


def test_the_synthetic_study_has_both_bands_wider_than_the_top_quantile():
    a, b = _grid()
    top = top_trials(N)
    assert (a > 0.8).sum() > top and ((b > 0.8) & (a <= 0.8)).sum() > top  # PED-ANOVA's top 10 % inside each band


def _storage_study(tmp_path, name: str, directions: list[str], values: list[tuple[float, ...]]) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"  # the file storage_importances reads (study/store/folder.py)
    study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    a, b = _grid()
    for ai, bi, v in zip(a, b, values, strict=True):
        study.add_trial(optuna.trial.create_trial(
            params=_params(ai, bi), distributions={"optim.lr": LR, "optim.weight_decay": WD}, values=list(v)))


def _ranking(imp: Importance) -> list[str]:
    assert imp.values, imp.note
    return sorted(imp.values, key=imp.values.get, reverse=True)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_storage_importance_ranks_what_reaches_the_best_values_in_either_direction(tmp_path, direction):
    """optuna.db's per-method study, maximised (objective as built) or minimised (the objective negated)."""
    a, b = _grid()
    y = good_by_a_bad_by_b(a, b) * (1 if direction == "maximize" else -1)
    _storage_study(tmp_path, "shared/gradnorm", [direction], [(v,) for v in y])
    imp = storage_importances(tmp_path)["shared/gradnorm"]
    assert imp.n_trials == N
    assert _ranking(imp)[0] == "optim.lr", imp.values
    assert imp.values["optim.lr"] > 2 * imp.values["optim.weight_decay"], imp.values


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_which_way_a_parameter_goes_is_spearman_signed_by_the_direction_by_hand(direction):
    """lr 1, 2, 3, 4 against objective 0.1, 0.3, 0.2, 0.4: ranks 1 2 3 4 and 1 3 2 4, d² = 0 1 1 0, so
    rho = 1 - 6·2 / (4·15) = 0.8; maximised, higher lr went with better trials (+0.8), minimised with worse (-0.8).
    A parameter of only some trials is correlated over those (conditional: alpha 1, 2, 3 against 0.1, 0.3, 0.4)."""
    study = optuna.create_study(direction=direction)
    alpha = FloatDistribution(0.0, 3.0)
    for lr, value, a in ((1e-4, 0.1, 1.0), (2e-4, 0.3, 2.0), (3e-4, 0.2, None), (4e-4, 0.4, 3.0)):
        params, dists = {"optim.lr": lr}, {"optim.lr": LR}
        if a is not None:
            params["balancer.alpha"], dists["balancer.alpha"] = a, alpha
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    sign = 1 if direction == "maximize" else -1
    found = better_when_higher(study)
    assert found["optim.lr"] == pytest.approx(sign * 0.8)
    assert found["balancer.alpha"] == pytest.approx(sign * 1.0)


def test_storage_importance_says_which_way_the_important_parameter_goes(tmp_path):
    a, b = _grid()
    _storage_study(tmp_path, "shared/gradnorm", ["maximize"], [(v,) for v in good_by_a_bad_by_b(a, b)])
    imp = storage_importances(tmp_path)["shared/gradnorm"]
    # the best trials are those of high lr, the worst those of high weight decay
    assert imp.directions["optim.lr"] > 0 > imp.directions["optim.weight_decay"]


def test_storage_importance_takes_each_objectives_own_direction(tmp_path):
    """A two-objective study (quality maximised, cost minimised), as the searcher's MULTI_OBJECTIVE writes it:
    the best quality is decided by lr alone, the lowest cost by weight decay alone (and the worst of each by
    the other parameter)."""
    a, b = _grid()
    quality = good_by_a_bad_by_b(a, b)  # max: top decided by lr
    cost = -good_by_a_bad_by_b(b, a)  # min: lowest decided by weight decay, highest by lr
    _storage_study(tmp_path, "dual", ["maximize", "minimize"], list(zip(quality, cost, strict=True)))
    assert _ranking(storage_importances(tmp_path)["dual"])[0] == "optim.lr"
    assert _ranking(storage_importances(tmp_path, objective=0)["dual"])[0] == "optim.lr"
    assert _ranking(storage_importances(tmp_path, objective=1)["dual"])[0] == "optim.weight_decay"


def _parquet_trials(tmp_path):
    """The same 60 trials as trials.parquet rows of one method (the real writers and reader)."""
    a, b = _grid()
    y = good_by_a_bad_by_b(a, b)
    rows = [(f"t{i}", "shared", "gradnorm", float(v), float(v), 10.0, "finished", "", _params(ai, bi))
            for i, (ai, bi, v) in enumerate(zip(a, b, y, strict=True))]
    trials = load_study(write_study(tmp_path / "s", rows)).trials
    assert trials[OBJECTIVE].to_numpy() == pytest.approx(y)  # objective = (mAP + view) / 2 at the best epoch
    return trials


def test_parquet_importance_ranks_what_reaches_the_best_values_in_either_direction(tmp_path):
    trials = _parquet_trials(tmp_path)
    up = param_importance(trials)  # the objective, maximised
    assert up.n_trials == N and _ranking(up)[0] == "optim.lr", up.values
    negated = trials.assign(**{OBJECTIVE: -trials[OBJECTIVE]})
    down = param_importance(negated, direction="minimize")
    assert _ranking(down)[0] == "optim.lr", down.values
    wrong = param_importance(negated)  # the negated objective maximised: its best trials are the worst ones
    assert _ranking(wrong)[0] == "optim.weight_decay", wrong.values


def test_the_unreliable_threshold_is_five_trials_in_the_top_quantile():
    assert top_trials(RELIABLE_TRIALS) == MIN_TOP_TRIALS > top_trials(RELIABLE_TRIALS - 1)


def test_few_trials_carry_a_caution_that_the_figure_and_notes_show(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for name, n in (("few", 20), ("enough", RELIABLE_TRIALS)):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        aa, bb = _grid(n=n)
        for ai, bi, v in zip(aa, bb, good_by_a_bad_by_b(aa, bb), strict=True):
            study.add_trial(optuna.trial.create_trial(
                params=_params(ai, bi), distributions={"optim.lr": LR, "optim.weight_decay": WD}, value=float(v)))
    found = storage_importances(tmp_path)
    few, enough = found["few"], found["enough"]
    assert few.values and not few.note and "unreliable" in few.caution and "20 completed trials" in few.caution
    assert "within few" in few.caution and f"{RELIABLE_TRIALS} or more" in few.caution
    assert enough.values and not enough.caution
    notes: list[str] = []
    fig = importance_figure(few, notes)
    assert notes == [few.caution]
    assert any("Unreliable ranking" in ann.text for ann in fig.layout.annotations)
    notes = []
    fig = importance_figure(enough, notes)
    assert notes == [] and not fig.layout.annotations


def test_parquet_importance_cautions_below_the_threshold(tmp_path):
    trials = _parquet_trials(tmp_path)
    assert not param_importance(trials).caution
    few = param_importance(trials.iloc[:RELIABLE_TRIALS - 1])
    assert few.values and "unreliable" in few.caution and f"{RELIABLE_TRIALS - 1} completed trials" in few.caution


def test_a_published_folds_study_pools_each_method_s_folds_centred_on_the_fold(tmp_path):
    """Two folds of one method: x decides the ranking within each fold; fold 1's validation patients are easier
    (+1 on every trial) and its searcher happened to draw y only in [0.9, 1]. Pooled raw, the top trials are all
    fold 1's and y's narrow band looks decisive too; centred on each fold's median, x alone is."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"  # the published name (study/store/folder.py's OPTUNA_DB)
    unit = FloatDistribution(0.0, 1.0)
    rng = np.random.default_rng(0)
    raw = optuna.create_study(direction="maximize")
    for fold, offset, (low, high) in ((0, 0.0, (0.0, 0.9)), (1, 1.0, (0.9, 1.0))):
        study = optuna.create_study(study_name=f"fold-{fold}/shared/gradnorm", storage=storage, direction="maximize")
        xs, ys = rng.permutation(np.linspace(0, 1, 30)), low + (high - low) * rng.permutation(np.linspace(0, 1, 30))
        for x, y in zip(xs, ys, strict=True):
            for target in (study, raw):
                target.add_trial(optuna.trial.create_trial(params={"x": x, "y": y}, value=offset + 0.1 * x,
                                                           distributions={"x": unit, "y": unit}))
    imp = storage_importances(tmp_path)
    assert set(imp) == {"shared/gradnorm"} and imp["shared/gradnorm"].n_trials == 60
    assert imp["shared/gradnorm"].values["y"] < 0.1 < 0.9 < imp["shared/gradnorm"].values["x"]
    assert objective_importances(raw)["y"] > 0.3  # what pooling without centring would have said
