"""The held-out headline: every ``--repeat-best`` re-run scored once on the test split, per method.

After the search and its repeats (study/tuning/phases.py), for each method:

1. its K chosen configurations are ``best_trials(..., k=K, per_method=True)`` (study/store/selection.py, the
   selector ``--repeat-best`` used), and its re-runs are the finished trials whose ``repeat_of`` is
   one of them (K x N seeds);
2. each re-run's best-epoch checkpoint (study/store/checkpoints.py: ``trial_checkpoint``; the study keeps
   it, study/tuning/keep_checkpoints.py) is scored once on the ``test`` split by ``evaluate_state``, on the
   split its own config records (``--split patient``: held-out patients), whatever the re-run's status: one
   that diverged after a good epoch is scored at that epoch and counted as failed; one with no best epoch or
   no checkpoint of it keeps an unscored row, also counted as failed;
3. the scores are pooled over all of the method's re-runs: mean and the half-width of the two-sided
   95% Student-t interval (study/analysis/stats.py), over n = the re-runs scored (seeds on one split);
   a study with ``--folds K`` (study/heldout/folds.py) takes the mean over seeds within each fold first, and
   the interval's unit is the fold (patients never seen);
4. the method's isolated costs (study/heldout/costs.py, its best configuration measured alone) and their
   ratio to ``dual``'s join the row.

Files written to the study folder (pyarrow, atomically):
  test_runs.parquet   one row per re-run, scored or not: trial_id, repeat_of, method, train.seed, status (the
                      re-run's own: finished, diverged, error, oom), scored, reason (why not scored),
                      best_epoch, checkpoint, test.* metrics (and ``fold`` in a folds study), eff.precision and
                      eff.memory_format (how it computed: trials.parquet's, study/heldout/numerics.py)
  costs.parquet       one row per method (and fold): its isolated ``cost.*`` figures
  headline.parquet    one row per method: method, n_folds (folds with a scored re-run), n_seeds (distinct
                      seeds scored), n_runs (re-runs scored), n_failed (re-runs that diverged, errored or
                      have no score: scored ones are in n_runs too), n_configs, interval_unit ("fold" |
                      "seed"), split_leaks_patients, split, split_by, split_seed, data,
                      test.<metric>.mean / .ci95, cost.*, cost.*.ratio_dual; <metric>: the registry's held-out
                      metrics (trainables/metrics/names.py: ``held_out``), the members of its families (AP@0.5 per
                      valve, view recall per view, jet present per valve: study/heldout/clinical.py) where
                      test_runs.parquet holds them
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

from study.analysis.common import fmt_column_ci, fmt_sig
from study.analysis.headline import HEADLINE_FILE, RUNS_FILE
from study.analysis.loading import order_methods
from study.analysis.stats import geometric_mean, mean_ci
from study.heldout.clinical import headline_jet_lines
from study.heldout.correction import UNCORRECTED, Correction
from study.heldout.costs import COSTS
from study.heldout.informative import busy_spreads
from study.heldout.numerics import recorded_numerics
from study.heldout.scoring import evaluate_state
from study.store.checkpoints import load_checkpoint, trial_checkpoint
from study.store.trials import plain, read_trials, write_atomic
from trainables.metrics.names import TEST_POOLED, TEST_SHOWN, held_out
from trainables.wording import counted

SPLIT = "test"
COSTS_FILE = "costs.parquet"
METRICS = TEST_POOLED  # test.<metric>, pooled per method (trainables/metrics/names.py), and ``held_out``'s families
REFERENCE = "dual"  # cost ratios are method / dual
OK = ("finished", "stopped")  # a re-run's statuses that are not failures (trials.parquet: status)
CONFIDENCE = 0.95


def score_reruns(study_dir: Path, chosen: pd.DataFrame, scored: pd.DataFrame | None = None,
                 study_seed: int = 0) -> pd.DataFrame:
    """Score every re-run of ``chosen`` once on the test split; one row per re-run, scored or not.

    A re-run is scored at its best epoch's checkpoint whatever its status: a run that diverged (or failed)
    after a good epoch is judged at that epoch, never dropped (divergence is a result about a method:
    ``status`` says it, and ``headline.parquet``'s ``n_failed`` counts it). A re-run without a best epoch, or
    whose best epoch's checkpoint is gone, keeps a row with ``scored`` false and the ``reason``: scoring
    another epoch would record a number the selection rule did not choose. The checkpoint's own config
    decides the patients it is scored on (study/heldout/scoring.py).

    ``scored``: rows of an earlier scoring (test_runs.parquet of a resumed study); a re-run scored there at
    the same best epoch keeps its row and is not scored again. ``study_seed``: the split seed of a checkpoint
    that does not record its own (a study from before ``data.split_seed``)."""
    trials = read_trials(study_dir)
    method_of = dict(zip(chosen["trial_id"].astype(str), chosen["method"], strict=True))
    repeat = trials["repeat_of"].fillna("").astype(str)
    earlier = {(str(r["trial_id"]), _epoch(r.get("best_epoch"))): r.to_dict()
               for _, r in (scored if scored is not None else pd.DataFrame()).iterrows()
               if bool(r.get("scored", True))}
    rows, reused = [], 0
    for _, r in trials[repeat.isin(method_of)].iterrows():
        trial, epoch = str(r["trial_id"]), _epoch(r["best_epoch"])
        base = {"trial_id": trial, "repeat_of": str(r["repeat_of"]), "method": method_of[str(r["repeat_of"])],
                "train.seed": int(r["train.seed"]), "status": str(r["status"]), "best_epoch": epoch}
        if (trial, epoch) in earlier:
            rows.append({**earlier[(trial, epoch)], "status": base["status"], **recorded_numerics(r)})
            reused += 1
            continue
        path = trial_checkpoint(study_dir, trial, epoch, strict=True) if epoch is not None else None
        if path is None:
            reason = (f"its best epoch's ({epoch}) checkpoint is gone" if epoch is not None
                      else "no epoch with a validation score")
            rows.append({**base, **recorded_numerics(r), "scored": False, "reason": reason})
            print(f"test: re-run {trial} of {r['repeat_of']} ({base['status']}): {reason}; not scored, counted as "
                  "failed", file=sys.stderr)
            continue
        state = load_checkpoint(path)
        base.update(recorded_numerics(r, state))  # eff.precision / eff.memory_format: how it trained (and is scored)
        recorded = int(state["config"].get("data.split_seed", -1)) >= 0
        result = evaluate_state(state, SPLIT, seed=None if recorded else study_seed, device="cpu", path=path)
        row = {**base, "scored": True, "reason": "", "checkpoint": str(path), "split_by": result["split_by"],
               "split_seed": int(result["split_seed"]), "data": result["data"], "images": int(result["images"])}
        row.update({k: float(v) for k, v in result["metrics"].items()})
        rows.append(row)
        shown = ", ".join(f"{m} {row[f'{SPLIT}.{m}']:.4f}" for m in ("map50", "map", "view_accuracy")
                          if math.isfinite(row.get(f"{SPLIT}.{m}", math.nan)))
        ended = "" if row["status"] in OK else f", {row['status']} after it"
        print(f"test: {row['method']} re-run {trial} (seed {row['train.seed']}, epoch {epoch}{ended}) "
              f"on {counted(row['images'], SPLIT + ' image')} split by {row['split_by']}: {shown}", flush=True)
    if reused:
        print(f"test: {counted(reused, 're-run')} scored before (test_runs.parquet) kept unchanged", flush=True)
    return pd.DataFrame(rows)


def failed(runs: pd.DataFrame) -> pd.Series:
    """(rows,) bool: a re-run that failed: it did not finish (diverged, error, oom), or it has no score."""
    if runs.empty:
        return pd.Series(dtype=bool)
    status = runs["status"].astype(str) if "status" in runs else pd.Series("finished", index=runs.index)
    scored = runs["scored"].astype(bool) if "scored" in runs else pd.Series(True, index=runs.index)
    return ~status.isin(OK) | ~scored


def has_score(runs: pd.DataFrame) -> pd.Series:
    """(rows,) bool: a re-run with test scores (test_runs.parquet from before ``scored``: every row)."""
    return runs["scored"].astype(bool) if "scored" in runs else pd.Series(len(runs) > 0, index=runs.index)


def _epoch(value: Any) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def read_runs(study_dir: Path) -> pd.DataFrame | None:
    """test_runs.parquet of an earlier held-out phase, or None."""
    path = study_dir / RUNS_FILE
    return pd.read_parquet(path) if path.is_file() else None


def headline_rows(chosen: pd.DataFrame, runs: pd.DataFrame, costs: pd.DataFrame, split_by: str,
                  split_seed: int, data: str, leaks: bool = False,
                  correction: Correction = UNCORRECTED) -> list[dict[str, Any]]:
    """One row per method (in the report's order of methods): test statistics and costs.

    With a ``fold`` column in ``runs`` holding several folds, a method's score is the mean over folds
    of its mean over seeds within each fold, and the interval's unit is the fold (``interval_unit``
    "fold"), widened by ``correction`` for the folds' overlapping training sets (study/heldout/correction.py;
    ``interval_correction``, ``test_train_ratio``); otherwise the re-runs are pooled and the interval covers
    seeds on one split ("seed", no correction).
    Costs with a ``fold`` column are each method's geometric mean over folds, so that ``ratio_dual`` is the
    verdict's ratio (the geometric mean of the per-fold ratios): one ratio definition everywhere."""
    folds = "fold" in runs  # a folds study's runs, even when one fold alone was scored
    if len(costs) and "fold" in costs:
        costs = costs.groupby("method", sort=False).agg(
            {c: (geometric_mean if c in COSTS else "first") for c in costs.columns if c not in ("method", "fold")}
        ).reset_index()
    by_cost = {str(r["method"]): r for _, r in costs.iterrows()} if len(costs) else {}
    ref = by_cost.get(REFERENCE)
    rows = []
    for method in order_methods(dict.fromkeys(chosen["method"])):  # the report's fixed order of methods
        every = runs[runs["method"] == method] if len(runs) else runs
        mine = every[has_score(every)]  # the re-runs with a score (a diverged one's, at its best epoch, too)
        configs = chosen[chosen["method"] == method]
        row: dict[str, Any] = {
            "method": method, "n_folds": int(mine["fold"].nunique()) if folds else int(len(mine) > 0),
            "n_seeds": int(mine["train.seed"].nunique()) if len(mine) else 0, "n_runs": len(mine),
            "n_failed": int(failed(every).sum()),
            "n_configs": len(configs) // (configs["fold"].nunique() if "fold" in configs else 1),
            "configs": ",".join(configs["trial_id"].astype(str)), "split": SPLIT, "split_by": split_by,
            "split_seed": split_seed, "data": data, "interval_unit": "fold" if folds else "seed",
            "interval_correction": correction.name if folds else UNCORRECTED.name,
            "test_train_ratio": correction.test_train_ratio if folds else 0.0,
            "split_leaks_patients": bool(leaks)}
        for m in held_out(runs.columns, split=SPLIT):  # METRICS, and the families' members the runs hold
            col = f"{SPLIT}.{m}"
            if col not in mine:
                values: list[float] = []
            elif folds:  # seeds averaged within a fold first: the fold is the unit
                scored = mine.assign(_v=pd.to_numeric(mine[col], errors="coerce")).dropna(subset=["_v"])
                values = [float(v) for v in scored.groupby("fold")["_v"].mean()]
            else:
                values = [float(v) for v in mine[col]]
            s = mean_ci(values, CONFIDENCE, correction.test_train_ratio if folds else 0.0)
            row[f"{col}.mean"], row[f"{col}.ci95"] = _or_none(s.mean), _or_none(s.half_width)
        cost = by_cost.get(method)
        for c in COSTS:
            value = float(cost[c]) if cost is not None and c in cost else math.nan
            den = float(ref[c]) if ref is not None and c in ref else math.nan
            row[c] = _or_none(value)
            row[f"{c}.ratio_dual"] = _or_none(value / den if math.isfinite(value) and math.isfinite(den) and den > 0
                                              else math.nan)
        for c in ("cost.trial_id", "cost.device", "cost.threads", "cost.batch", "cost.imgsz", "cost.host"):
            if c in costs or not len(costs):  # a column costs.parquet lacks (a published one's host) is not invented
                row[c] = None if cost is None or c not in cost else _plain(cost[c])
        rows.append(row)
    return rows


def headline_table(rows: list[dict[str, Any]]) -> pa.Table:
    """headline.parquet's schema: identity and counts typed, every statistic and cost float64."""
    text = ("method", "configs", "split", "split_by", "data", "cost.trial_id", "cost.device", "cost.host",
            "interval_unit", "interval_correction")
    ints = ("n_folds", "n_seeds", "n_runs", "n_failed", "n_configs", "split_seed")
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
    corrected = (" (Nadeau–Bengio corrected for the folds' overlapping training sets)"
                 if first.get("interval_correction") == "nadeau-bengio" else "")
    unit = (f"mean ± 95% CI over each method's scored patient folds (of {int(df['n_folds'].max())}; seeds averaged "
            f"within each fold){corrected}" if folds
            else "mean ± 95% CI over each method's re-runs: the interval covers seeds only, on one split")
    print(f"\nheld-out headline: {SPLIT} split ({where}, split by {first['split_by']}, seed {first['split_seed']}); "
          f"{unit}; costs measured alone (×dual)")
    if bool(first.get("split_leaks_patients", False)):
        print("warning: the test split shares patients with the training or validation split: these scores measure "
              "memory as much as generalisation (use --split patient)")
    costs_file = path.parent / COSTS_FILE
    busy = busy_spreads(pd.read_parquet(costs_file)) if costs_file.is_file() else {}
    for _, r in df.iterrows():
        scores = ", ".join(f"{m} {_ci(r, m)}" + _majority(r, m) for m in TEST_SHOWN)
        costs = ", ".join(_cost(r, c, label, busy.get(str(r["method"]), {}).get(c)) for c, label in COSTS.items()
                          if c in ("cost.train_step_ms", "cost.latency_ms_b1", "cost.peak_mem_mb"))
        counts = f"{counted(int(r['n_folds']), 'fold')}, " if folds else ""
        lost = f", {int(r['n_failed'])} FAILED" if r.get("n_failed", 0) else ""
        seeds, runs = int(r["n_seeds"]), int(r["n_runs"])
        print(f"  {r['method']:<16} {counts}{counted(seeds, 'seed')}, {counted(runs, 'run')}{lost}: {scores}; {costs}")
        for line in [*_per_class_lines(r), *headline_jet_lines(r, SPLIT)]:
            print(line)
    if df.get("n_failed", pd.Series(dtype=float)).fillna(0).any():
        print("  FAILED: re-runs that diverged or errored (scored at their best epoch where they had one) or have "
              "no score; test_runs.parquet: status, scored, reason")
    print(f"headline: {path}")


def _majority(row: pd.Series, metric: str) -> str:
    """`` (majority view 0.412)`` after view accuracy: the share of the scored split's most common view, what always
    naming it scores (headline.parquet from before it: "")."""
    if metric != "view_accuracy" or not math.isfinite(row.get(f"{SPLIT}.view_majority_share.mean") or math.nan):
        return ""
    return f" (majority view {_ci(row, 'view_majority_share')})"


def _per_class_lines(row: pd.Series) -> list[str]:
    """AP@0.5 per valve and view recall per view, each mean ± 95% CI (where headline.parquet has them)."""
    lines = []
    for family, said in (("ap50_", "AP@0.5 per valve"), ("view_recall_", "view recall per view")):
        head = f"{SPLIT}.{family}"
        members = [c.removeprefix(head).removesuffix(".mean") for c in row.index
                   if c.startswith(head) and c.endswith(".mean")]
        if members:
            lines.append(f"    {said}: " + ", ".join(f"{m} {_ci(row, family + m)}" for m in members))
    return lines


def _ci(row: pd.Series, metric: str) -> str:
    return fmt_column_ci(row, f"{SPLIT}.{metric}")


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
