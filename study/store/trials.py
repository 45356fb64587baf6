"""The Parquet results of a study: schema, atomic writers and readers.

Under ``STORAGE/NAME/``:
  trials.parquet   one row per trial: identity, status and error, every hyperparameter (the flat
                   TrialConfig keys as columns), the best-epoch and last-epoch value of every
                   metric the registry summarises so (``best.val.*``, ``at_best.loss.*``, ``last.loss.*``,
                   ...) and the last epoch's of the static ones (``eff.*``, ``time.*``).
  epochs.parquet   one row per trial and epoch: the engine's epoch dict, its keys that
                   trainables/metrics/names.py registers (``epoch_row``).
Both carry where a trial ran (``PLACEMENT_FIELDS``: Ray node id, node IP and host name, the device
it trained on, its GPU share and any device warning, start and report times); a trial row takes them
from its last epoch (a trial resumed on another node records the node it finished on, and ``node_ids``
every node it ran on; ``attempts`` how many times it started).
  manifest.json    versions, git commit, dataset fingerprint, seeds, command line.

Every write goes to a temporary file that is then renamed over the old one, so a reader (or a
study killed mid-write) never sees a half-written file. The schema is explicit for every fixed
column; per-class columns (``val.ap50_<class>``, ``val.view_recall_<view>``) depend on the dataset
and are typed float64.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study.store.atomic import atomic_path
from study.store.selection import best_epoch
from trainables.config import BalancerConfig, TrialConfig
from trainables.metrics import names

TRIAL_ID_FIELDS = [
    pa.field("trial_id", pa.string()),
    pa.field("space", pa.string()),
    pa.field("status", pa.string()),  # finished | diverged | error | stopped | running
    pa.field("error", pa.string()),
    pa.field("repeat_of", pa.string()),  # the trial whose config a --repeat-best run repeats
    pa.field("epochs_run", pa.int64()),
    pa.field("best_epoch", pa.int64()),
    pa.field("attempts", pa.int64()),  # how many times the trial started: 1, +1 per retry (a dead node) or --resume
]
EPOCH_ID_FIELDS = [
    pa.field("trial_id", pa.string()),
    pa.field("epoch", pa.int64()),
    pa.field("step", pa.int64()),
    pa.field("status", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("attempt", pa.int64()),  # which start of the trial trained this epoch (1: its first; the recorder counts)
]
# Where and on what a trial ran (trainables/ray_trial.py reports them as ``placement.<name>``).
PLACEMENT_FIELDS = [
    pa.field("node_id", pa.string()),  # Ray node id (hex): tells apart nodes that share an IP or host name
    pa.field("node_ip", pa.string()),
    pa.field("node_host", pa.string()),
    pa.field("device", pa.string()),  # what it trained on: cpu | cuda:0 | ...
    pa.field("gpus", pa.float64()),  # the GPU share Ray gave the trial (--gpus-per-trial)
    pa.field("device_warning", pa.string()),  # e.g. a GPU from Ray that torch cannot see; "" when none
    pa.field("started_at", pa.float64()),  # unix seconds when the trial's (latest) worker started
]
EPOCH_PLACEMENT_FIELDS = [*PLACEMENT_FIELDS, pa.field("reported_at", pa.float64())]  # unix seconds of the report
TRIAL_PLACEMENT_FIELDS = [
    *PLACEMENT_FIELDS,
    pa.field("ended_at", pa.float64()),  # the last report's time
    pa.field("node_ids", pa.string()),  # every node the trial reported from, in order, comma-separated (a retry
]                                       # after a node died adds the node it continued on)


def config_fields() -> list[pa.Field]:
    """One typed column per TrialConfig key, derived from the dataclass types."""
    cfg = TrialConfig()
    out = []
    for key, value in cfg.to_flat().items():
        section, _, name = key.partition(".")
        hint = get_type_hints(type(getattr(cfg, section)))[name] if name else get_type_hints(TrialConfig)[key]
        out.append(pa.field(key, _arrow_type(hint, value)))
    return out


def _arrow_type(hint: Any, value: Any) -> pa.DataType:
    if hint is bool or isinstance(value, bool):
        return pa.bool_()
    if hint is int:
        return pa.int64()
    if hint is float:
        return pa.float64()
    if get_args(hint) or hint is str:
        return pa.string()
    raise TypeError(f"no Parquet type for {hint}")


def _table(rows: list[dict[str, Any]], fixed: list[pa.Field]) -> pa.Table:
    """A table with the fixed fields first (typed), then the remaining keys (float64 or string)."""
    names = {f.name for f in fixed}
    extra: dict[str, pa.DataType] = {}
    for row in rows:
        for k, v in row.items():
            if k not in names and k not in extra:
                extra[k] = pa.string() if isinstance(v, str) else pa.float64()
    schema = pa.schema([*fixed, *(pa.field(k, t) for k, t in sorted(extra.items()))])
    columns = {}
    for f in schema:
        values = [row.get(f.name) for row in rows]
        if pa.types.is_floating(f.type):
            values = [None if v is None else float(v) for v in values]
        elif pa.types.is_string(f.type):
            values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
        columns[f.name] = pa.array(values, type=f.type)
    return pa.table(columns, schema=schema)


def epochs_table(rows: list[dict[str, Any]]) -> pa.Table:
    return _table(rows, EPOCH_ID_FIELDS + EPOCH_PLACEMENT_FIELDS)


def trials_table(rows: list[dict[str, Any]]) -> pa.Table:
    return _table(rows, TRIAL_ID_FIELDS + TRIAL_PLACEMENT_FIELDS + config_fields())


def epoch_row(result: dict[str, Any]) -> dict[str, Any]:
    """The keys of a report that epochs.parquet keeps: those trainables/metrics/names.py registers."""
    return {k: v for k, v in result.items() if names.lookup(k) is not None}


def trial_row(
    trial_id: str, space: str, config: dict[str, Any], epochs: list[dict[str, Any]], status: str, error: str = "",
    repeat_of: str = "", objective: str = names.OBJECTIVE,
) -> dict[str, Any]:
    """One trials.parquet row from a trial's flat config and its epoch dicts (in order)."""
    row: dict[str, Any] = {
        "trial_id": trial_id, "space": space, "status": status, "error": error, "repeat_of": repeat_of,
    }
    # the config's own keys: the common ones and its balancer's hyperparameters (a plugin's included)
    keys = set(TrialConfig.flat_keys(str(config.get("balancer.name", BalancerConfig.name))))
    row.update({k: v for k, v in config.items() if k in keys})
    scored = [e for e in epochs if _finite(e.get(objective))]
    row["epochs_run"] = len([e for e in epochs if e.get("status") != "diverged"])
    best = best_epoch(scored, objective)  # the one rule (study/store/selection.py): highest, the first on a tie
    last = scored[-1] if scored else None
    row["best_epoch"] = int(best["epoch"]) if best else None
    for column, epoch in ((names.best_column, best), (lambda k: f"last.{k}", last)):
        if epoch is None:
            continue
        for k, v in epoch.items():
            if names.summary(k) == names.BEST_LAST and not isinstance(v, str):
                row[column(k)] = v
    if last is not None:
        row.update({k: v for k, v in last.items() if names.summary(k) == names.STATIC})
    attempts = [int(e["attempt"]) for e in epochs if _finite(e.get("attempt"))]
    row["attempts"] = max(attempts) if attempts else None
    if epochs:  # the latest report, scored or not (a failed trial still ran somewhere)
        placed = {f.name for f in PLACEMENT_FIELDS}
        row.update({k: v for k, v in epochs[-1].items() if k in placed})
        if "reported_at" in epochs[-1]:
            row["ended_at"] = epochs[-1]["reported_at"]
        row["node_ids"] = ",".join(dict.fromkeys(str(e["node_id"]) for e in epochs if e.get("node_id")))
    return row


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def write_atomic(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_json_atomic(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))


def read_trials(study_dir: str | Path) -> pd.DataFrame:
    """A study's trials.parquet, with the column names of today (an older file's are renamed)."""
    return read_trials_file(Path(study_dir) / "trials.parquet")


def read_trials_file(path: str | Path) -> pd.DataFrame:
    """One trials.parquet file; columns an older version named otherwise (``best.loss.*`` before
    ``at_best.loss.*``: trainables/metrics/names.py ``renamed_best_columns``) come out under today's names."""
    trials = pd.read_parquet(path)
    return trials.rename(columns=names.renamed_best_columns(list(trials.columns)))


def read_epochs(study_dir: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(study_dir) / "epochs.parquet")


def read_manifest(study_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(study_dir) / "manifest.json").read_text())


def row_config(row: Any) -> dict[str, Any]:
    """A trials.parquet row's own flat config: the common keys and its balancer's hyperparameters (a
    plugin's included); the columns of other balancers in a mixed study, NaN in this row, are left out."""
    return {k: plain(row[k]) for k in TrialConfig.flat_keys(str(row["balancer.name"])) if k in row}


def plain(value: Any) -> Any:
    """A value read back from Parquet as a plain Python value (numpy scalars -> int / float / bool)."""
    return value.item() if hasattr(value, "item") else value
