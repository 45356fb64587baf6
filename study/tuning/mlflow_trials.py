"""Every trial as an MLflow child run of its study's run (``--mlflow``; study/tracking/mlflow_study.py).

Ray Tune's own ``MLflowLoggerCallback`` does most of it and is used: it runs in the driver (trials on any node
need no route to the tracking server, and the trainable stays MLflow-free), opens one run per trial, logs the
trial's config as params and closes the run when the trial ends. Where it does not fit, this subclass says so:

- **parent and per-trial tags**: its tags are one dict for every trial; here each child carries
  ``mlflow.parentRunId`` (MLflow's own nesting tag), the Tune trial id, its method, fold, phase and the trial it
  repeats;
- **a retry or a --resume continues the same run**: Tune's callback keys its runs by the Trial object of one
  driver, so a ``--resume`` would open a second run per trial; here a trial's run is found again by its tag;
- **steps are epochs and metrics are ours**: it logs every number of a result at ``training_iteration``;
  here each epoch's registered metrics (epochs.parquet's columns) at step = epoch, so a trial retried from its
  checkpoint overwrites no other epoch's point;
- **the best epoch**: at the end the trial's ``best.*`` metrics (its trials.parquet row) and its status
  (``finished``, ``diverged``, ...) as a tag; a run whose trial did not finish ends FAILED;
- **a server that stops answering costs a warning, not the study**: Tune ends an experiment whose callback
  raises, so every call to the server is guarded; after the first failure (one ``warning:`` line,
  ``lose_tracking``) nothing more is sent to it by this process (MLflow's client retries each call for minutes).

``setup_mlflow`` (MLflow inside the trainable) is not used: the ML core never imports Ray or MLflow.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune.logger.mlflow import MLflowLoggerCallback

from study.store.trials import epoch_row
from study.tracking.mlflow_study import PHASE_TAG, PHASES, ParentRun, lose_tracking, metric_key, tracking_lost
from study.tuning.recorder import ResultsRecorder
from trainables.ray_trial import split_meta

TRIAL_TAG = "mtl.trial_id"
ENDED_WELL = ("finished", "stopped")  # stopped: ended early by ASHA, a normal end


class MlflowTrials(MLflowLoggerCallback):
    """One child run per trial under ``parent``; reads the trial's summary row from ``recorder`` (listed
    before this callback, so the row is written when a trial ends here)."""

    def __init__(self, parent: ParentRun, recorder: ResultsRecorder, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"mtl.phase {phase!r} is not one of {PHASES}")
        super().__init__(tracking_uri=parent.tracking_uri, experiment_name=parent.experiment_name,
                         tags={"mlflow.parentRunId": parent.run_id, PHASE_TAG: phase})
        self.parent = parent
        self.recorder = recorder
        self.runs: dict[str, str] = {}  # Tune trial id -> MLflow run id

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self.runs = {}
        if not tracking_lost(self.parent.tracking_uri):
            self._guarded("opening the study's trial runs", self._setup, *args, **kwargs)

    def log_trial_start(self, trial: Any) -> None:
        self._guarded(f"opening the run of trial {trial.trial_id}", self._start, trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        self._guarded(f"logging an epoch of trial {trial.trial_id}", self._result, trial, result)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._guarded(f"closing the run of trial {trial.trial_id}", self._end, trial, failed)

    def _guarded(self, what: str, call: Any, *args: Any, **kwargs: Any) -> None:
        """``call`` unless the server is gone; a failure is one warning (``lose_tracking``), never the study's end."""
        if tracking_lost(self.parent.tracking_uri):
            return
        try:
            call(*args, **kwargs)
        except Exception as err:
            lose_tracking(self.parent.tracking_uri, what, err)

    def _setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.parent.tracking_uri)
        children = self.client.search_runs(  # the runs an earlier driver of this study opened (a --resume)
            [self.parent.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{self.parent.run_id}'",
            max_results=50000)
        self.runs = {r.data.tags[TRIAL_TAG]: r.info.run_id for r in children if TRIAL_TAG in r.data.tags}

    def _start(self, trial: Any) -> None:
        if trial.trial_id in self.runs:  # a retry after a node died, or a --resume: the same run goes on
            self.client.update_run(self.runs[trial.trial_id], status="RUNNING")
            return
        config, meta = split_meta(dict(trial.config))
        method = _method_of(config)
        tags = {**self.tags, TRIAL_TAG: trial.trial_id, "mtl.method": method, "mtl.arch": str(config.get("arch")),
                "mtl.fold": str(config.get("data.fold", 0)), "mtl.seed": str(config.get("train.seed")),
                "mtl.repeat_of": str(meta.get("meta.repeat_of", ""))}
        run = self.client.create_run(self.parent.experiment_id, run_name=f"{method} {trial.trial_id}", tags=tags)
        self.runs[trial.trial_id] = run.info.run_id
        self._trial_runs[trial] = run.info.run_id  # what Tune's own methods (log_params, end_run) look up
        self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=config)

    def _result(self, trial: Any, result: dict[str, Any]) -> None:
        if "epoch" not in result or trial.trial_id not in self.runs:
            return
        numbers = {metric_key(k): float(v) for k, v in epoch_row(result).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        self._log(trial.trial_id, numbers, step=int(result["epoch"]))

    def _end(self, trial: Any, failed: bool) -> None:
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        row = self.recorder.trials.get(trial.trial_id, {})
        best = {metric_key(k): float(v) for k, v in row.items() if k.startswith("best.")
                and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if isinstance(row.get("best_epoch"), (int, float)) and math.isfinite(row["best_epoch"]):
            best["best_epoch"] = float(row["best_epoch"])
        self._log(trial.trial_id, best, step=0)
        status = "error" if failed else str(row.get("status", "finished"))
        self.client.set_tag(run_id, "mtl.status", status)
        self.client.set_terminated(run_id, status="FINISHED" if status in ENDED_WELL else "FAILED")

    def _log(self, trial_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):  # MLflow's limit per batch
            self.client.log_batch(self.runs[trial_id], metrics=batch[start:start + 1000])


def _method_of(config: dict[str, Any]) -> str:
    """A trial's method label (``shared/gradnorm``, ``dual``, ...), as trials.parquet's ``method`` column."""
    from search_spaces import registry

    return registry.method_label(config)
