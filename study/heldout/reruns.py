"""The held-out headline: every ``--repeat-best`` re-run scored once on the test split, per method.

After the search and its repeats (study/tuning/phases.py), for each method:

1. its K chosen configurations are ``best_trials(..., k=K, per_method=True)`` (study/store/selection.py, the
   selector ``--repeat-best`` used), and its re-runs are the finished trials whose ``repeat_of`` is
   one of them (K x N seeds);
2. each re-run's best-epoch checkpoint (study/store/checkpoints.py: ``trial_checkpoint``; the study keeps
   it, study/tuning/keep_checkpoints.py) is scored once on the ``test`` split by ``evaluate_state``, with the
   study's own split (``--split patient``: held-out patients) and split seed;
3. the scores are pooled over all of the method's re-runs: mean and the half-width of the two-sided
   95% Student-t interval (study/analysis/stats.py), over n = the re-runs scored (seeds on one split);
   a study with ``--folds K`` (study/heldout/folds.py) takes the mean over seeds within each fold first, and
   the interval's unit is the fold (patients never seen);
4. the method's isolated costs (study/heldout/costs.py, its best configuration measured alone) and their
   ratio to ``dual``'s join the row.

Files written to the study folder (pyarrow, atomically):
  test_runs.parquet   one row per scored re-run: trial_id, repeat_of, method, train.seed, best_epoch,
                      checkpoint, test.* metrics (and ``fold`` in a folds study)
  costs.parquet       one row per method (and fold): its isolated ``cost.*`` figures
  headline.parquet    one row per method: method, n_folds, n_seeds (distinct seeds), n_runs (re-runs
                      scored), n_configs, interval_unit ("fold" | "seed"), split_leaks_patients, split,
                      split_by, split_seed, data, test.<metric>.mean / .ci95, cost.*, cost.*.ratio_dual
A resumed study keeps the re-runs it scored before (same trial, same best epoch) as they were.
A single-task method has no score for the other task: those cells are empty (null).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from study.analysis.common import fmt_sig
from study.analysis.headline import HEADLINE_FILE, RUNS_FILE
from study.analysis.loading import order_methods
from study.analysis.stats import geometric_mean, mean_ci
from study.heldout.costs import COSTS
from study.heldout.informative import busy_spreads
from study.heldout.scoring import evaluate_state
from study.store.checkpoints import load_checkpoint, trial_checkpoint
from study.store.trials import plain, read_trials, write_atomic
from trainables.metrics.names import TEST_POOLED, TEST_SHOWN

SPLIT = "test"
COSTS_FILE = "costs.parquet"
METRICS = TEST_POOLED  # test.<metric>, pooled per method (trainables/metrics/names.py)
REFERENCE = "dual"  # cost ratios are method / dual
CONFIDENCE = 0.95


def score_reruns(study_dir: Path, chosen: pd.DataFrame, split_seed: int,
                 scored: pd.DataFrame | None = None) -> pd.DataFrame:
    """Score every finished re-run of ``chosen`` once on the test split; one row per re-run.

    ``scored``: rows of an earlier scoring (test_runs.parquet of a resumed study); a re-run already
    there at the same best epoch keeps its row and is not scored again. A re-run whose best epoch's
    checkpoint is gone is not scored (one line says so): scoring another epoch would record a number
    the selection rule did not choose."""
    trials = read_trials(study_dir)
    method_of = dict(zip(chosen["trial_id"].astype(str), chosen["method"], strict=True))
    repeat = trials["repeat_of"].fillna("").astype(str)
    reruns = trials[repeat.isin(method_of) & (trials["status"] == "finished") & trials["best_epoch"].notna()]
    skipped = trials[repeat.isin(method_of) & ~trials.index.isin(reruns.index)]
    for _, r in skipped.iterrows():
        print(f"test: re-run {r['trial_id']} of {r['repeat_of']} is {r['status']}: not scored", file=sys.stderr)
    earlier = {(str(r["trial_id"]), int(r["best_epoch"])): r.to_dict()
               for _, r in (scored if scored is not None else pd.DataFrame()).iterrows()}
    rows, reused = [], 0
    for _, r in reruns.iterrows():
        key = (str(r["trial_id"]), int(r["best_epoch"]))
        if key in earlier:
            rows.append(earlier[key])
            reused += 1
            continue
        path = trial_checkpoint(study_dir, key[0], key[1], strict=True)
        if path is None:
            print(f"test: re-run {key[0]} of {r['repeat_of']}: the checkpoint of its best epoch ({key[1]}) is gone; "
                  "not scored", file=sys.stderr)
            continue
        result = evaluate_state(load_checkpoint(path), SPLIT, seed=split_seed, device="cpu", path=path)
        row = {"trial_id": key[0], "repeat_of": str(r["repeat_of"]), "method": method_of[str(r["repeat_of"])],
               "train.seed": int(r["train.seed"]), "best_epoch": key[1], "checkpoint": str(path),
               "split_by": result["split_by"], "split_seed": int(result["split_seed"]), "data": result["data"],
               "images": int(result["images"])}
        row.update({k: float(v) for k, v in result["metrics"].items()})
        rows.append(row)
        shown = ", ".join(f"{m} {row[f'{SPLIT}.{m}']:.4f}" for m in ("map50", "map", "view_accuracy")
                          if math.isfinite(row.get(f"{SPLIT}.{m}", math.nan)))
        print(f"test: {row['method']} re-run {row['trial_id']} (seed {row['train.seed']}, epoch {row['best_epoch']}) "
              f"on {row['images']} {SPLIT} images split by {row['split_by']}: {shown}", flush=True)
    if reused:
        print(f"test: {reused} re-runs scored before (test_runs.parquet) kept as they were", flush=True)
    return pd.DataFrame(rows)


def read_runs(study_dir: Path) -> pd.DataFrame | None:
    """test_runs.parquet of an earlier held-out phase, or None."""
    path = study_dir / RUNS_FILE
    return pd.read_parquet(path) if path.is_file() else None


def headline_rows(chosen: pd.DataFrame, runs: pd.DataFrame, costs: pd.DataFrame, split_by: str,
                  split_seed: int, data: str, leaks: bool = False) -> list[dict[str, Any]]:
    """One row per method (in the report's order of methods): test statistics and costs.

    With a ``fold`` column in ``runs`` holding several folds, a method's score is the mean over folds
    of its mean over seeds within each fold, and the interval's unit is the fold (``interval_unit``
    "fold"); otherwise the re-runs are pooled and the interval covers seeds on one split ("seed").
    Costs with a ``fold`` column are each method's geometric mean over folds, so that ``ratio_dual`` is the
    verdict's ratio (the geometric mean of the per-fold ratios): one ratio definition everywhere."""
    folds = "fold" in runs and runs["fold"].nunique() > 1
    if len(costs) and "fold" in costs:
        costs = costs.groupby("method", sort=False).agg(
            {c: (geometric_mean if c in COSTS else "first") for c in costs.columns if c not in ("method", "fold")}
        ).reset_index()
    by_cost = {str(r["method"]): r for _, r in costs.iterrows()} if len(costs) else {}
    ref = by_cost.get(REFERENCE)
    rows = []
    for method in order_methods(dict.fromkeys(chosen["method"])):  # the report's fixed order of methods
        mine = runs[runs["method"] == method] if len(runs) else runs
        configs = chosen[chosen["method"] == method]
        row: dict[str, Any] = {
            "method": method, "n_folds": int(mine["fold"].nunique()) if folds else 1,
            "n_seeds": int(mine["train.seed"].nunique()) if len(mine) else 0, "n_runs": len(mine),
            "n_configs": len(configs) // (configs["fold"].nunique() if "fold" in configs else 1),
            "configs": ",".join(configs["trial_id"].astype(str)), "split": SPLIT, "split_by": split_by,
            "split_seed": split_seed, "data": data, "interval_unit": "fold" if folds else "seed",
            "split_leaks_patients": bool(leaks)}
        for m in METRICS:
            col = f"{SPLIT}.{m}"
            if col not in mine:
                values: list[float] = []
            elif folds:  # seeds averaged within a fold first: the fold is the unit
                scored = mine.assign(_v=pd.to_numeric(mine[col], errors="coerce")).dropna(subset=["_v"])
                values = [float(v) for v in scored.groupby("fold")["_v"].mean()]
            else:
                values = [float(v) for v in mine[col]]
            s = mean_ci(values, CONFIDENCE)
            row[f"{col}.mean"], row[f"{col}.ci95"] = _or_none(s.mean), _or_none(s.half_width)
        cost = by_cost.get(method)
        for c in COSTS:
            value = float(cost[c]) if cost is not None and c in cost else math.nan
            den = float(ref[c]) if ref is not None and c in ref else math.nan
            row[c] = _or_none(value)
            row[f"{c}.ratio_dual"] = _or_none(value / den if math.isfinite(value) and math.isfinite(den) and den > 0
                                              else math.nan)
        for c in ("cost.trial_id", "cost.device", "cost.threads", "cost.batch", "cost.imgsz", "cost.host"):
            row[c] = None if cost is None or c not in cost else _plain(cost[c])
        rows.append(row)
    return rows


def headline_table(rows: list[dict[str, Any]]) -> pa.Table:
    """headline.parquet's schema: identity and counts typed, every statistic and cost float64."""
    text = ("method", "configs", "split", "split_by", "data", "cost.trial_id", "cost.device", "cost.host",
            "interval_unit")
    ints = ("n_folds", "n_seeds", "n_runs", "n_configs", "split_seed")
    flags = ("split_leaks_patients",)
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["method", "n_seeds"]
    fields = [pa.field(k, pa.string() if k in text else pa.int64() if k in ints else pa.bool_() if k in flags
                       else pa.float64()) for k in keys]
    schema = pa.schema(fields)
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema}, schema=schema)


def read_costs(study_dir: Path, best: pd.DataFrame) -> pd.DataFrame | None:
    """costs.parquet of an earlier run when it measured exactly ``best``'s configurations (a resumed
    study), else None."""
    path = study_dir / COSTS_FILE
    if not path.is_file():
        return None
    costs = pd.read_parquet(path)
    if "cost.trial_id" not in costs:
        return None
    measured = dict(zip(costs["method"].astype(str), costs["cost.trial_id"].astype(str), strict=True))
    wanted = dict(zip(best["method"].astype(str), best["trial_id"].astype(str), strict=True))
    return costs if measured == wanted else None


def write_costs(study_dir: Path, costs: pd.DataFrame) -> Path:
    """costs.parquet: one row per method, its isolated ``cost.*`` figures."""
    path = study_dir / COSTS_FILE
    write_atomic(pa.Table.from_pandas(costs, preserve_index=False), path)
    return path


def write_heldout(study_dir: Path, chosen: pd.DataFrame, runs: pd.DataFrame, costs: pd.DataFrame, split_by: str,
                  split_seed: int, data: str, leaks: bool = False) -> Path:
    """Write test_runs.parquet and headline.parquet; returns headline.parquet's path."""
    if len(runs):
        write_atomic(pa.Table.from_pandas(runs, preserve_index=False), study_dir / RUNS_FILE)
    rows = headline_rows(chosen, runs, costs, split_by, split_seed, data, leaks)
    path = study_dir / HEADLINE_FILE
    write_atomic(headline_table(rows), path)
    return path


def print_headline(path: Path) -> None:
    """The headline as a console table: test mean ± CI per method, costs and their ratio to dual."""
    df = pd.read_parquet(path)
    if df.empty:
        print("headline: no method has a scored re-run")
        return
    first = df.iloc[0]
    where = "held-out patients" if first["split_by"] == "patient" else "the dataset's own test folder"
    folds = first.get("interval_unit") == "fold"
    unit = (f"mean ± 95% CI over {int(first['n_folds'])} patient folds (seeds averaged within each fold)" if folds
            else "mean ± 95% CI over each method's re-runs: the interval covers seeds only, on one split")
    print(f"\nheld-out headline: {SPLIT} split ({where}, split by {first['split_by']}, seed {first['split_seed']}); "
          f"{unit}; costs measured alone (×dual)")
    if bool(first.get("split_leaks_patients", False)):
        print("warning: the test split shares patients with the training or validation split: these scores measure "
              "memory as much as generalisation (use --split patient)")
    costs_file = path.parent / COSTS_FILE
    busy = busy_spreads(pd.read_parquet(costs_file)) if costs_file.is_file() else {}
    for _, r in df.iterrows():
        scores = ", ".join(f"{m} {_ci(r, m)}" for m in TEST_SHOWN)
        costs = ", ".join(_cost(r, c, label, busy.get(str(r["method"]), {}).get(c)) for c, label in COSTS.items()
                          if c in ("cost.train_step_ms", "cost.latency_ms_b1", "cost.peak_mem_mb"))
        counts = f"{int(r['n_folds'])} folds, " if folds else ""
        seeds, runs = int(r["n_seeds"]), int(r["n_runs"])
        print(f"  {r['method']:<16} {counts}{seeds} seed{'s' if seeds != 1 else ''}, "
              f"{runs} run{'s' if runs != 1 else ''}: {scores}; {costs}")
    print(f"headline: {path}")


def _ci(row: pd.Series, metric: str) -> str:
    mean, half = row.get(f"{SPLIT}.{metric}.mean"), row.get(f"{SPLIT}.{metric}.ci95")
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{mean:.3f}" + (f" ± {half:.3f}" if half is not None and math.isfinite(half) else "")


def _cost(row: pd.Series, column: str, label: str, spread: tuple[float, float] | None) -> str:
    """``train step 1,950 ms (×0.336)``: three significant figures with the label's unit, the ratio to dual, and
    where one configuration's timings disagree by more than BUSY_FACTOR their range, flagged."""
    name, _, unit = label.partition(" (")
    text = f"{name} {fmt_sig(row[column])} {unit.rstrip(')')}".rstrip() + f" (×{fmt_sig(row[f'{column}.ratio_dual'])})"
    return text + (f" [busy machine: {fmt_sig(spread[0])}–{fmt_sig(spread[1])} across folds]" if spread else "")


def _or_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _plain(value: Any) -> Any:
    """``plain``, with NaN as None (an empty cell of headline.parquet)."""
    value = plain(value)
    return None if isinstance(value, float) and math.isnan(value) else value
