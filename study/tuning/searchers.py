"""One independent Optuna search per method, behind one Ray Tune ``Searcher``.

A space with several methods (``compare``) must not let them share a sampler: with one TPE
history, one method's scores steer another's learning rate, and methods whose objectives live on
different scales (mAP for ``det_only``, accuracy for ``cls_only``) are ranked against each other.
So each method gets

- its own Optuna study (named after the method: ``shared/gradnorm``, ``dual``, ...), all in one
  storage, ``results/NAME/optuna.db`` (SQLite, written as trials finish: optuna-dashboard reads it
  live, and ``--resume`` continues the same studies);
- its own TPE sampler, seeded from the study seed and the method's name only, so a method's
  suggestions do not depend on which other methods share the study;
- the same number of trials: suggestions go round-robin over the methods (``--samples`` is a
  multiple of the number of methods);
- its own objective value: the trial's **best epoch** (study/store/selection.py), not its last, for a score; a
  cost (``time.train_s``) as trials.parquet summarises it, the whole trial's (``_told``);
- a trial the scheduler (ASHA) stopped early is told PRUNED, with its intermediate values;
- a quarter of a method's trials (1 to 10) as TPE's random start-up, the rest TPE (``startup_trials``).

A single-method space is the same searcher with one method.
"""

from __future__ import annotations

import functools
import logging
import math
import pickle
import warnings
import zlib
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search_spaces import registry
from study.store.selection import EPOCH_SCORE, best_epoch
from trainables.metrics import names
from trainables.wording import counted

log = logging.getLogger(__name__)
RUNNING = "running"  # an epoch report's status before the last epoch (trainables/metrics/names.py: status)
MAX_STARTUP_TRIALS = 10  # Optuna's default number of random start-up trials for TPE
STARTUP_SHARE = 4  # a method's budget of n trials starts with ceil(n / 4) random ones (1..10): the rest are TPE's


def startup_trials(per_method: int) -> int:
    """Random start-up trials of a method with ``per_method`` trials: a quarter, at least 1, at most 10.

    ``min(10, n)`` made every trial random at the budgets a laptop runs (n <= 10), so TPE never ran."""
    return max(1, min(MAX_STARTUP_TRIALS, math.ceil(per_method / STARTUP_SHARE)))


def method_seed(seed: int, method: str) -> int:
    """A method's sampler seed: a function of the study seed and the method's name, nothing else."""
    return (seed * 1_000_003 + zlib.crc32(method.encode())) % 2**32


def storage_url(path: Any) -> str:
    """The SQLAlchemy URL of an SQLite file (absolute: Tune may change a process's working directory)."""
    from pathlib import Path

    return f"sqlite:///{Path(path).expanduser().resolve()}"


class PerMethodSearch(Searcher):
    """Round-robin over per-method Optuna studies; see the module docstring.

    Args:
        space: the search space's name (search_spaces/registry.py).
        base: the study's full flat base config (the command line's keys).
        objectives: (metric, mode) pairs, e.g. ``[("val.objective", "max")]``; each Optuna trial is
            told these metrics at the trial's best epoch.
        samples: trials in all; a multiple of the number of methods.
        seed: the study seed.
        storage: an SQLAlchemy URL (``sqlite:///.../optuna.db``), or None for in-memory studies.
        methods: the methods to search (default: all of the space's).
    """

    def __init__(self, space: str, base: dict[str, Any], objectives: list[tuple[str, str]], samples: int,
                 seed: int = 0, storage: str | None = None, methods: list[dict[str, Any]] | None = None) -> None:
        metrics, modes = [m for m, _ in objectives], [mode for _, mode in objectives]
        super().__init__(metric=metrics if len(metrics) > 1 else metrics[0],
                         mode=modes if len(modes) > 1 else modes[0])
        self.objectives = list(objectives)
        self.methods = [dict(m) for m in (methods or registry.methods(space))]
        if samples % len(self.methods):
            raise ValueError(f"samples {samples} is not a multiple of the {len(self.methods)} methods")
        self.names = [registry.method_label(m) for m in self.methods]
        self.defines = [functools.partial(registry.define_with_base, space=space, base=base, method=m)
                        for m in self.methods]
        per_method = samples // len(self.methods)
        self.startup = startup_trials(per_method)
        self.per_method = per_method
        db = optuna.storages.RDBStorage(storage) if storage else optuna.storages.InMemoryStorage()
        directions = ["minimize" if mode == "min" else "maximize" for _, mode in objectives]
        with warnings.catch_warnings():  # multivariate, group, constant_liar: chosen knowingly, not news to a user
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.studies = [
                optuna.create_study(
                    storage=db, study_name=name, load_if_exists=True, directions=directions,
                    sampler=optuna.samplers.TPESampler(
                        seed=method_seed(seed, name), multivariate=True, group=True, constant_liar=True,
                        n_startup_trials=self.startup),
                )
                for name in self.names
            ]
        self._name_metrics()
        self.suggested = 0
        self.live: dict[str, tuple[int, optuna.Trial]] = {}  # Tune trial id -> (method index, Optuna trial)
        self.epochs: dict[str, dict[int, dict[str, Any]]] = {}  # Tune trial id -> epoch -> its scored metrics
        self.done: set[str] = set()

    # -- Tune's Searcher interface ------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id in self.live:  # Tune may ask twice for the same trial: the same answer
            k, trial = self.live[trial_id]
            return {**trial.params, **self.defines[k](trial)}
        k = self.suggested % len(self.methods)
        self.suggested += 1
        trial = self.studies[k].ask()
        trial.set_user_attr("tune_trial_id", trial_id)
        config = {**self.defines[k](trial), **trial.params}
        self.live[trial_id] = (k, trial)
        self.epochs[trial_id] = {}
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id not in self.live or trial_id in self.done:
            return
        values = self._values(result)
        if values is None or "epoch" not in result:
            return
        epoch = int(result["epoch"])
        # a resumed trial may repeat an epoch: the newer result replaces it
        self.epochs[trial_id][epoch] = {"epoch": epoch, EPOCH_SCORE: result[EPOCH_SCORE], "values": values,
                                        "status": result.get("status")}
        if len(values) == 1:  # Optuna keeps intermediate values for single-objective studies only
            _, trial = self.live[trial_id]
            with warnings.catch_warnings():  # a trial resumed after Ctrl-C reports its last epoch again: Optuna
                warnings.filterwarnings("ignore", "The reported value is ignored", UserWarning)  # keeps the first
                trial.report(values[0], step=epoch)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self.live or trial_id in self.done:
            return
        k, trial = self.live[trial_id]
        history = [e for _, e in sorted(self.epochs.get(trial_id, {}).items())]
        best = best_epoch(history)
        try:
            if best is None:  # diverged, failed or stopped before a validated epoch: nothing to learn from
                self.studies[k].tell(trial, state=TrialState.FAIL)
            elif not error and history[-1].get("status") == RUNNING:
                # stopped by the scheduler (ASHA) before its last epoch: pruned, as Optuna's own pruning records
                # it (its intermediate values stay; Optuna takes the last one as its value), never COMPLETE
                trial.set_user_attr("best_epoch", int(best["epoch"]))
                self.studies[k].tell(trial, state=TrialState.PRUNED)
            else:
                trial.set_user_attr("best_epoch", int(best["epoch"]))
                values = self._told(best, history[-1])
                self.studies[k].tell(trial, values if len(values) > 1 else values[0])
        except (RuntimeError, ValueError) as err:  # e.g. already told before a --resume
            log.warning("optuna: trial %s of %s: %s", trial.number, self.names[k], err)
        self.done.add(trial_id)
        self.epochs.pop(trial_id, None)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        self._name_metrics()  # a study begun before the names were set gets them on its --resume
        self._skip_finished()
        self._fail_orphans()

    def plan(self) -> str:
        """How each method's trials are drawn: random start-up trials, then TPE."""
        tpe = self.per_method - min(self.startup, self.per_method)
        return (f"search: {counted(self.per_method, 'trial')} per method, each method's own TPE: "
                f"{min(self.startup, self.per_method)} random start-up, {tpe} TPE")

    # -- helpers ----------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """Each objective by the trials.parquet column that holds the value Optuna is told (``_told``), e.g.
        ``best.val.objective``, ``time.train_s``: the name a user then finds in the results as well."""
        return [names.trial_column(m) for m, _ in self.objectives]

    def _name_metrics(self) -> None:
        """Store the objectives' names in each Optuna study (optuna.db): optuna-dashboard and
        ``trials_dataframe`` then say ``best.val.objective`` where they said "Objective 0"."""
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use: not news to a user
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for study in self.studies:
                study.set_metric_names(self.metric_names())

    def _told(self, best: dict[str, Any], last: dict[str, Any]) -> list[float]:
        """Each objective as trials.parquet's column for it holds it (``names.trial_column``): a score at the
        trial's best epoch (``best.val.objective``), a cost summarised by its last epoch (``time.train_s``:
        the whole trial's training seconds). One definition for the searcher, the Parquet row and the report."""
        return [best["values"][i] if names.summary(m) == names.BEST_LAST else last["values"][i]
                for i, (m, _) in enumerate(self.objectives)]

    def _values(self, result: dict[str, Any]) -> list[float] | None:
        """The objectives' values in ``result``; None unless all (and the epoch score) are finite."""
        keys = [m for m, _ in self.objectives] + [EPOCH_SCORE]
        values = [result.get(k) for k in keys]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values[:-1]]

    def _skip_finished(self) -> None:
        """Tune trials whose Optuna trial the killed driver finished after its last snapshot: Tune resumes
        them and reports their epochs again, but Optuna already holds their result (a finished trial
        cannot be updated), so the searcher leaves them alone from here on."""
        for k, study in enumerate(self.studies):
            finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
            for tid, (method, trial) in self.live.items():
                if method == k and tid not in self.done and trial.number in finished:
                    log.info("optuna: trial %s of %s was told before the driver stopped; its resumed epochs "
                             "are not reported to Optuna again", trial.number, self.names[k])
                    self.done.add(tid)
                    self.epochs.pop(tid, None)

    def _fail_orphans(self) -> None:
        """Optuna trials left RUNNING by a killed driver after its last searcher snapshot belong to no
        Tune trial any more: mark them failed, so TPE's constant liar does not count them forever."""
        mine = {(k, t.number) for tid, (k, t) in self.live.items() if tid not in self.done}
        for k, study in enumerate(self.studies):
            for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if (k, frozen.number) not in mine:
                    study.tell(frozen.number, state=TrialState.FAIL)
