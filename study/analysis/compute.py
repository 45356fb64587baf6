"""What a study cost to run: trials, epochs trained against what FIFO would have trained, worker CPU-hours per
method and phase, and the wall time of its sittings (``python -m study.analyze STUDY --markdown``).

Worker time is read from ``epochs.parquet``, not estimated: each start of a trial (``attempt``) held its
``--cpus-per-trial`` from its worker's ``started_at`` to its last epoch's ``reported_at``, so an attempt's
CPU-seconds are that span times the CPUs it held (model building, data loading and the efficiency
measurement at the start included; epochs an interruption made a trial train twice included too: they
were paid for). The isolated cost measurement of the chosen configurations and the driver's own work are
not trials: they show only in the wall time. Wall time: each sitting of ``manifest.json``'s ``runs``, from
its start to its end, or, for a sitting killed before it could record one, to the last epoch reported before
the next sitting began.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from study.analysis.loading import Study
from trainables.wording import counted

SEARCH, RERUNS = "search", "re-runs"


def attempt_seconds(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per start of a trial: ``trial_id`` (and ``fold``), ``attempt``, ``epochs`` (epoch rows it
    reported), ``train_s`` (the sum of their ``time.epoch_s``: the training loop) and ``worker_s`` (its last
    ``reported_at`` minus its ``started_at``; NaN where the file has no timestamps, as an early study's
    trimmed epochs.parquet)."""
    keys = [k for k in ("fold", "trial_id") if k in epochs]
    if "epoch" not in epochs or "trial_id" not in epochs:  # no epoch recorded: nothing was trained
        return pd.DataFrame(columns=["trial_id", "attempt", "epochs", "train_s", "worker_s"])
    rows = epochs.assign(attempt=epochs["attempt"].fillna(1) if "attempt" in epochs else 1)
    for column in ("started_at", "reported_at", "time.epoch_s"):
        if column not in rows:
            rows[column] = math.nan
    spans = rows.groupby([*keys, "attempt"], dropna=False).agg(
        started=("started_at", "min"), reported=("reported_at", "max"), epochs=("epoch", "size"),
        train_s=("time.epoch_s", "sum")).reset_index()
    spans["worker_s"] = (spans["reported"] - spans["started"]).clip(lower=0)
    return spans.drop(columns=["started", "reported"])


def compute_rows(study: Study, cpus_per_trial: float = 1.0) -> list[dict[str, Any]]:
    """Per method (in the report's order) and in all: searched trials, the epochs they trained, the epochs
    FIFO would have trained (trials × their ``train.epochs``), re-runs and their epochs, CPU-hours of the
    training loop in the search and in the re-runs, and CPU-hours of the workers in all (NaN where unknown)."""
    trials = study.trials
    spans = attempt_seconds(study.epochs)
    keys = [k for k in ("fold", "trial_id") if k in trials and k in spans]
    per_trial = spans.groupby(keys).agg(epochs=("epochs", "sum"), train_s=("train_s", "sum"),
                                        worker_s=("worker_s", lambda x: x.sum(min_count=len(x)))).reset_index()
    columns = [*keys, "method", "is_repeat", *(["train.epochs"] if "train.epochs" in trials else [])]
    joined = trials[columns].merge(per_trial, on=keys, how="left")
    rows = []
    for method in [*study.methods(), None]:
        mine = joined if method is None else joined[joined["method"] == method]
        search, reruns = mine[~mine["is_repeat"]], mine[mine["is_repeat"]]
        fifo = pd.to_numeric(search["train.epochs"], errors="coerce").sum() if "train.epochs" in search else 0
        rows.append({"method": method or "all", "trials": len(search), "epochs": int(search["epochs"].sum()),
                     "fifo_epochs": int(fifo), "reruns": len(reruns), "rerun_epochs": int(reruns["epochs"].sum()),
                     "train_hours_search": float(search["train_s"].sum()) * cpus_per_trial / 3600,
                     "train_hours_reruns": float(reruns["train_s"].sum()) * cpus_per_trial / 3600,
                     "worker_hours": float(mine["worker_s"].sum(min_count=len(mine))) * cpus_per_trial / 3600})
    return rows


def sittings_seconds(manifest: dict[str, Any], epochs: pd.DataFrame) -> list[float]:
    """Wall seconds of each sitting of ``manifest``'s ``runs`` (see the module docstring for one that was
    killed); NaN for a killed sitting no epoch was reported in."""
    runs = sorted(manifest.get("runs") or [], key=lambda r: r["started"])
    reported = pd.to_numeric(epochs["reported_at"], errors="coerce") if "reported_at" in epochs else pd.Series()
    out = []
    for i, sitting in enumerate(runs):
        start = float(sitting["started"])
        end = sitting.get("finished")
        if end is None:
            until = float(runs[i + 1]["started"]) if i + 1 < len(runs) else math.inf
            inside = reported[(reported >= start) & (reported < until)]
            end = float(inside.max()) if len(inside) else math.nan
        out.append(float(end) - start)
    return out


def fmt_hours(seconds: float) -> str:
    """``7920`` -> ``"2 h 12 min"``; ``"—"`` when unknown."""
    if not math.isfinite(seconds):
        return "—"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def compute_table(study: Study) -> str:
    """The rows of ``compute_rows`` as Markdown, then one line with the sittings' wall time."""
    cpus = float((study.manifest.get("settings") or {}).get("cpus_per_trial") or 1)
    header = ["method", "searched trials", "epochs trained (FIFO's)", "re-runs (epochs)",
              "training CPU-hours: search", "re-runs", "worker CPU-hours, all"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in compute_rows(study, cpus):
        cells = [r["method"], str(r["trials"]), f"{r['epochs']:,} ({r['fifo_epochs']:,})",
                 f"{r['reruns']} ({r['rerun_epochs']:,})", f"{r['train_hours_search']:.1f}",
                 f"{r['train_hours_reruns']:.1f}",
                 f"{r['worker_hours']:.1f}" if math.isfinite(r["worker_hours"]) else "—"]
        lines.append("| " + " | ".join(f"**{c}**" if r["method"] == "all" else c for c in cells) + " |")
    return "\n".join(lines) + "\n\n" + wall_line(sittings_seconds(study.manifest, study.epochs)) + \
        f"; {cpus:g} CPU per trial"


def wall_line(walls: list[float]) -> str:
    """``"wall time 2 h 12 min in 2 sittings (16 min, 1 h 56 min)"``; a sitting of unknown length is said."""
    if not walls:
        return "wall time: not recorded (manifest.json has no runs)"
    known = [w for w in walls if math.isfinite(w)]
    unknown = len(walls) - len(known)
    said = f"wall time {fmt_hours(sum(known))}" + (f" plus {unknown} of unknown length (killed; its epochs carry "
                                                    "no timestamps)" if unknown else "")
    return f"{said} in {counted(len(walls), 'sitting')} ({', '.join(fmt_hours(w) for w in walls)})"
