"""The held-out headline: every ``--repeat-best`` re-run scored once on the test split, per method.

After the search and its repeats (study/runner.py), for each method:

1. its K chosen configurations are ``best_trials(..., k=K, per_method=True)`` (study/best.py, the
   selector ``--repeat-best`` used), and its re-runs are the finished trials whose ``repeat_of`` is
   one of them (K x N seeds);
2. each re-run's best-epoch checkpoint (study/evaluate.py: ``trial_checkpoint``; the study keeps
   it, study/keep_best.py) is scored once on the ``test`` split by ``evaluate_state``, with the
   study's own split (``--split patient``: held-out patients) and split seed;
3. the scores are pooled over all of the method's re-runs: mean and the half-width of the two-sided
   95% Student-t interval (study/analysis/stats.py), over n = the re-runs scored;
4. the method's isolated costs (study/costs.py, its best configuration measured alone) and their
   ratio to ``dual``'s join the row.

Files written to the study folder (pyarrow, atomically):
  test_runs.parquet   one row per scored re-run: trial_id, repeat_of, method, train.seed, best_epoch,
                      checkpoint, test.* metrics
  costs.parquet       one row per method: its isolated ``cost.*`` figures
  headline.parquet    one row per method: method, n_seeds (re-runs scored), n_configs, split,
                      split_by, split_seed, data, test.<metric>.mean / .ci95, cost.*, cost.*.ratio_dual
A single-task method has no score for the other task: those cells are empty (null).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from study.analysis.data import order_methods
from study.analysis.headline import HEADLINE_FILE, RUNS_FILE
from study.analysis.stats import mean_ci
from study.best import best_trials
from study.checkpoint import load_checkpoint
from study.costs import COSTS
from study.evaluate import evaluate_state, trial_checkpoint
from study.results import plain, read_trials, write_atomic
from trainables.metrics.names import TEST_POOLED, TEST_SHOWN

SPLIT = "test"
COSTS_FILE = "costs.parquet"
METRICS = TEST_POOLED  # test.<metric>, pooled per method (trainables/metrics/names.py)
REFERENCE = "dual"  # cost ratios are method / dual
CONFIDENCE = 0.95


def chosen_configs(study_dir: Path, metric: str, mode: str, k: int) -> pd.DataFrame:
    """Each method's ``k`` best searched trials (the ones ``--repeat-best k`` re-ran), best first."""
    return best_trials(read_trials(study_dir), metric, mode, k=k, per_method=True)


def score_reruns(study_dir: Path, chosen: pd.DataFrame, split_seed: int) -> pd.DataFrame:
    """Score every finished re-run of ``chosen`` once on the test split; one row per re-run."""
    trials = read_trials(study_dir)
    method_of = dict(zip(chosen["trial_id"].astype(str), chosen["method"], strict=True))
    repeat = trials["repeat_of"].fillna("").astype(str)
    reruns = trials[repeat.isin(method_of) & (trials["status"] == "finished") & trials["best_epoch"].notna()]
    skipped = trials[repeat.isin(method_of) & ~trials.index.isin(reruns.index)]
    for _, r in skipped.iterrows():
        print(f"test: re-run {r['trial_id']} of {r['repeat_of']} is {r['status']}: not scored", file=sys.stderr)
    rows = []
    for _, r in reruns.iterrows():
        path = trial_checkpoint(study_dir, str(r["trial_id"]), int(r["best_epoch"]))
        result = evaluate_state(load_checkpoint(path), SPLIT, seed=split_seed, device="cpu", path=path)
        row = {"trial_id": str(r["trial_id"]), "repeat_of": str(r["repeat_of"]),
               "method": method_of[str(r["repeat_of"])],
               "train.seed": int(r["train.seed"]), "best_epoch": int(r["best_epoch"]), "checkpoint": str(path),
               "split_by": result["split_by"], "split_seed": int(result["split_seed"]), "data": result["data"],
               "images": int(result["images"])}
        row.update({k: float(v) for k, v in result["metrics"].items()})
        rows.append(row)
        shown = ", ".join(f"{m} {row[f'{SPLIT}.{m}']:.4f}" for m in ("map50", "map", "view_accuracy")
                          if math.isfinite(row.get(f"{SPLIT}.{m}", math.nan)))
        print(f"test: {row['method']} re-run {row['trial_id']} (seed {row['train.seed']}, epoch {row['best_epoch']}) "
              f"on {row['images']} {SPLIT} images split by {row['split_by']}: {shown}", flush=True)
    return pd.DataFrame(rows)


def headline_rows(chosen: pd.DataFrame, runs: pd.DataFrame, costs: pd.DataFrame, split_by: str,
                  split_seed: int, data: str) -> list[dict[str, Any]]:
    """One row per method (in ``chosen``'s order of methods): pooled test statistics and costs."""
    by_cost = {str(r["method"]): r for _, r in costs.iterrows()} if len(costs) else {}
    ref = by_cost.get(REFERENCE)
    rows = []
    for method in order_methods(dict.fromkeys(chosen["method"])):  # the report's fixed order of methods
        mine = runs[runs["method"] == method] if len(runs) else runs
        configs = chosen[chosen["method"] == method]
        row: dict[str, Any] = {"method": method, "n_seeds": len(mine), "n_configs": len(configs),
                               "configs": ",".join(configs["trial_id"].astype(str)), "split": SPLIT,
                               "split_by": split_by, "split_seed": split_seed, "data": data}
        for m in METRICS:
            col = f"{SPLIT}.{m}"
            values = [float(v) for v in mine[col]] if col in mine else []
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
            row[c] = None if cost is None else _plain(cost[c])
        rows.append(row)
    return rows


def headline_table(rows: list[dict[str, Any]]) -> pa.Table:
    """headline.parquet's schema: identity and counts typed, every statistic and cost float64."""
    text = ("method", "configs", "split", "split_by", "data", "cost.trial_id", "cost.device", "cost.host")
    ints = ("n_seeds", "n_configs", "split_seed")
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["method", "n_seeds"]
    fields = [pa.field(k, pa.string() if k in text else pa.int64() if k in ints else pa.float64()) for k in keys]
    schema = pa.schema(fields)
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema}, schema=schema)


def write_costs(study_dir: Path, costs: pd.DataFrame) -> Path:
    """costs.parquet: one row per method, its isolated ``cost.*`` figures."""
    path = study_dir / COSTS_FILE
    write_atomic(pa.Table.from_pandas(costs, preserve_index=False), path)
    return path


def write_heldout(study_dir: Path, chosen: pd.DataFrame, runs: pd.DataFrame, costs: pd.DataFrame, split_by: str,
                  split_seed: int, data: str) -> Path:
    """Write test_runs.parquet and headline.parquet; returns headline.parquet's path."""
    if len(runs):
        write_atomic(pa.Table.from_pandas(runs, preserve_index=False), study_dir / RUNS_FILE)
    rows = headline_rows(chosen, runs, costs, split_by, split_seed, data)
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
    print(f"\nheld-out headline: {SPLIT} split ({where}, split by {first['split_by']}, seed {first['split_seed']}); "
          "mean ± 95% CI over each method's re-runs; costs measured alone (×dual)")
    for _, r in df.iterrows():
        scores = ", ".join(f"{m} {_ci(r, m)}" for m in TEST_SHOWN)
        costs = ", ".join(f"{label.split(' (')[0]} {_num(r[c])} ({_num(r[f'{c}.ratio_dual'])}×)"
                          for c, label in COSTS.items() if c in ("cost.train_step_ms", "cost.latency_ms_b1",
                                                                 "cost.peak_mem_mb"))
        print(f"  {r['method']:<16} n={int(r['n_seeds'])}: {scores}; {costs}")
    print(f"headline: {path}")


def _ci(row: pd.Series, metric: str) -> str:
    mean, half = row.get(f"{SPLIT}.{metric}.mean"), row.get(f"{SPLIT}.{metric}.ci95")
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{mean:.3f}" + (f" ± {half:.3f}" if half is not None and math.isfinite(half) else "")


def _num(v: Any) -> str:
    return "—" if v is None or not math.isfinite(float(v)) else f"{float(v):.3g}"


def _or_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _plain(value: Any) -> Any:
    """``plain``, with NaN as None (an empty cell of headline.parquet)."""
    value = plain(value)
    return None if isinstance(value, float) and math.isnan(value) else value
