"""A Ray Tune callback that keeps ``trials.parquet`` and ``epochs.parquet`` current as trials run.

It runs in the driver. Every result upserts one epoch row (a resumed trial that repeats an epoch
replaces it) and every finished, failed or stopped trial upserts one trial row; each write is
atomic (study/store/trials.py), so the files are readable at every instant, and a study restarted with
``--resume`` reloads them in ``setup`` and carries on.

Every epoch row says which **attempt** of its trial trained it: 1 for the trial's first start, one more for
each later start of the same trial (Tune retrying it from its last checkpoint after its node or worker died,
or a ``--resume`` after the driver's cluster died). A retry continues from its checkpoint, so the epochs
before it keep their attempt and those after it carry the new one: each epoch is in the file once.

The progress line counts against the running experiment's own total: the search's trials in the search,
the re-runs in the ``--repeat-best`` phase (a second Tune experiment whose recorder also loads the search's
rows from trials.parquet), told apart by the row's ``repeat_of``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ray.tune import Callback

from study.store.trials import (
    EPOCH_PLACEMENT_FIELDS,
    epoch_row,
    epochs_table,
    read_trials_file,
    trial_row,
    trials_table,
    write_atomic,
)
from trainables.ray_trial import PLACEMENT_PREFIX, split_meta
from trainables.wording import counted

PLACEMENT_KEYS = {f"{PLACEMENT_PREFIX}{f.name}": f.name for f in EPOCH_PLACEMENT_FIELDS}


class ResultsRecorder(Callback):
    def __init__(self, study_dir: str | Path, space: str, echo: bool = True) -> None:
        self.study_dir = Path(study_dir)
        self.space = space
        self.echo = echo  # one line per epoch result on stdout (Tune's own tables are off)
        self.total: int | None = None
        self.epochs: dict[tuple[str, int], dict[str, Any]] = {}
        self.trials: dict[str, dict[str, Any]] = {}
        self.warned: set[str] = set()  # trials whose device warning was printed (once each)
        self.attempts: dict[str, int] = {}  # trial id -> how many times it started (on_trial_start)

    # -- state ------------------------------------------------------------------------------------
    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        import pandas as pd

        self.total = total_num_samples or num_samples

        epochs_path, trials_path = self.study_dir / "epochs.parquet", self.study_dir / "trials.parquet"
        if epochs_path.exists():
            for row in pd.read_parquet(epochs_path).to_dict("records"):
                self.epochs[(row["trial_id"], int(row["epoch"]))] = row = _drop_missing(row)
                attempt = row.get("attempt")  # NaN in a file from before the column: its first attempt
                attempt = int(attempt) if isinstance(attempt, (int, float)) and attempt == attempt else 1
                self.attempts[row["trial_id"]] = max(self.attempts.get(row["trial_id"], 0), attempt)
        if trials_path.exists():
            for row in read_trials_file(trials_path).to_dict("records"):
                self.trials[row["trial_id"]] = _drop_missing(row)

    def finished(self) -> list[str]:
        return [tid for tid, row in self.trials.items() if row.get("status") not in ("running", None)]

    def done(self, reruns: bool) -> int:
        """Finished trials of one phase: the search's (``reruns`` False) or the ``--repeat-best`` re-runs'.
        Both phases write trials.parquet, so the re-run phase's recorder also holds the search's rows; each
        phase's progress counts only its own against its own experiment's total."""
        return sum(1 for tid in self.finished() if _is_rerun(self.trials[tid]) == reruns)

    def trial_epochs(self, trial_id: str) -> list[dict[str, Any]]:
        return [row for (tid, _), row in sorted(self.epochs.items()) if tid == trial_id]

    # -- Tune hooks -------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Called for every start of a trial's worker: the first, a retry after a failure, a --resume."""
        self.attempts[trial.trial_id] = self.attempts.get(trial.trial_id, 0) + 1
        if self.attempts[trial.trial_id] > 1 and self.echo:
            print(f"trial {trial.trial_id}: attempt {self.attempts[trial.trial_id]}, from its last checkpoint (last "
                  f"epoch recorded: {_last_epoch(self.trial_epochs(trial.trial_id))})", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        row = epoch_row(result)
        if "epoch" not in row:
            return
        row.update({name: result[key] for key, name in PLACEMENT_KEYS.items() if key in result})
        if row.get("device_warning") and trial.trial_id not in self.warned:
            self.warned.add(trial.trial_id)  # printed here: a worker's own output may not reach this console
            print(f"warning: trial {trial.trial_id} on node {row.get('node_ip')} "
                  f"({str(row.get('node_id', ''))[:8]}): {row['device_warning']}", file=sys.stderr, flush=True)
        row["trial_id"] = trial.trial_id
        row["attempt"] = self.attempts.get(trial.trial_id, 1)
        self.epochs[(trial.trial_id, int(row["epoch"]))] = row
        self._write_trial(trial, status=str(result.get("status", "running")), error=str(result.get("reason", "")))
        write_atomic(epochs_table(list(self.epochs.values())), self.study_dir / "epochs.parquet")
        if self.echo:
            reruns = _is_rerun(self.trials[trial.trial_id])
            print(_progress_line(trial.trial_id, row, self.done(reruns), self.total,
                                 unit="re-run" if reruns else "trial"), flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        status = str(last.get("status", "finished"))
        if status == "running":
            status = "stopped"  # ended by the scheduler (ASHA) before its last epoch
        self._write_trial(trial, status=status, error=str(last.get("reason", "")))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message = ""
        if trial.error_file and Path(trial.error_file).exists():
            lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
            message = lines[-1][:500] if lines else ""
        self._write_trial(trial, status="error", error=message or "the trial's worker failed")
        if self.echo:
            print(f"trial {trial.trial_id} failed: {message}", flush=True)

    # -- writing ----------------------------------------------------------------------------------
    def _write_trial(self, trial: Any, status: str, error: str) -> None:
        config, meta = split_meta(dict(trial.config))
        self.trials[trial.trial_id] = trial_row(
            trial.trial_id, self.space, config, self.trial_epochs(trial.trial_id), status=status, error=error,
            repeat_of=str(meta.get("meta.repeat_of", "")),
        )
        write_atomic(trials_table(list(self.trials.values())), self.study_dir / "trials.parquet")


def _progress_line(trial_id: str, row: dict[str, Any], done: int, total: int | None, unit: str = "trial") -> str:
    def f(key: str) -> str:
        value = row.get(key)
        return f"{value:.3f}" if isinstance(value, float) else "-"

    status = row.get("status", "")
    head = f"[{done}/{counted(total, unit)} done] " if total else ""  # [1/1 trial done], [2/6 trials done]
    if status in ("diverged", "error", "oom"):
        return f"{head}trial {trial_id} epoch {row.get('epoch')}: {status} — {row.get('reason', '')}"
    return (f"{head}trial {trial_id} epoch {row.get('epoch')}: objective {f('val.objective')}  "
            f"mAP {f('val.map')}  mAP50 {f('val.map50')}  view acc {f('val.view_accuracy')}  "
            f"epoch {row.get('time.epoch_s', 0):.1f}s  {status}")


def _is_rerun(row: dict[str, Any]) -> bool:
    """A ``--repeat-best`` re-run's row: its ``repeat_of`` names the trial (or default) it repeats."""
    value = row.get("repeat_of")
    return isinstance(value, str) and value != ""


def _last_epoch(epochs: list[dict[str, Any]]) -> str:
    """The last epoch recorded before a restart (its checkpoint, or a later epoch the retry trains again)."""
    return str(int(epochs[-1]["epoch"])) if epochs else "none"


def _drop_missing(row: dict[str, Any]) -> dict[str, Any]:
    """Parquet gives None/NaN for columns a row never had; drop None so rows round-trip."""
    return {k: v for k, v in row.items() if v is not None}
