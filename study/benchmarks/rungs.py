"""``python -m study.bench rungs STORAGE/NAME``: where ASHA may rank trials, measured on a FIFO study.

ASHA stops a trial at a rung by its validation objective at that epoch. That is sound only where the ranking
of a method's trials at that epoch predicts their ranking at their best epoch (the trial's result everywhere).
For each method of a FIFO study (every trial trained all its epochs), this prints the Spearman rank
correlation, across the method's searched trials, between each trial's ``val.objective`` at epoch e and its
best ``val.objective`` over all epochs, for candidate rungs e; then the earliest rung at which every method's
ρ reaches ``--threshold`` (0.8 by default): the grace period the evidence supports. A row over all trials
together is printed too (more trials, but ranked across methods, which ASHA never does: it does not decide).
Spearman's ρ is computed here (ranks with ties averaged, then Pearson's r of the ranks): no SciPy needed.

Output: a Markdown table (docs/benchmarks.md keeps it) and one JSON line per method and rung.
"""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd

from study.analysis.stats import spearman
from study.cli import ArgumentParser
from study.errors import UsageError

OBJECTIVE = "val.objective"
DEFAULT_RUNGS = (1, 2, 3, 5, 8, 10, 12, 15, 20, 25)
MIN_TRIALS = 4  # fewer trials of a method: no correlation worth printing
ALL = "(all methods)"  # a supplementary row: ASHA ranks within a method, so only the methods' rows decide


def rung_correlations(epochs: pd.DataFrame, methods: pd.Series, rungs: tuple[int, ...],
                      best_so_far: bool = False) -> pd.DataFrame:
    """One row per method and rung: ``method``, ``rung``, ``rho``, ``n_trials``.

    epochs: epochs.parquet (``trial_id``, ``epoch``, ``val.objective``); methods: trial_id -> method label of
    the trials to use (searched trials that finished every epoch). ``best_so_far``: rank by each trial's best
    objective up to the rung instead of its value at the rung (what ASHA would see if trials reported their
    running best; Tune's ASHA reads the value reported at the rung)."""
    wide = epochs[epochs["trial_id"].isin(methods.index)].pivot_table(
        index="trial_id", columns="epoch", values=OBJECTIVE, aggfunc="last")  # (trials, epochs)
    best = wide.max(axis=1)
    if best_so_far:
        wide = wide.cummax(axis=1)
    rows = []
    groups = {m: list(methods.index[methods == m]) for m in sorted(set(methods))}
    if len(groups) > 1:  # every trial together: more trials, but across methods (ASHA ranks within one)
        groups[ALL] = list(methods.index)
    for method, members in groups.items():
        ids = [t for t in members if t in wide.index]
        for rung in rungs:
            if rung not in wide.columns:
                continue
            rho = spearman(wide.loc[ids, rung], best.loc[ids]) if len(ids) >= MIN_TRIALS else math.nan
            rows.append({"method": method, "rung": rung, "rho": rho, "n_trials": len(ids)})
    return pd.DataFrame(rows, columns=["method", "rung", "rho", "n_trials"])


def earliest_rung(table: pd.DataFrame, threshold: float) -> int | None:
    """The earliest rung at which every method's ρ is at least ``threshold`` (None: no rung holds)."""
    for rung, group in table[table["method"] != ALL].groupby("rung", sort=True):
        # (a ρ of exactly the threshold, 0.8 as 0.7999999999999999, holds)
        if len(group) and group["rho"].notna().all() and (group["rho"] >= threshold - 1e-12).all():
            return int(rung)
    return None


def markdown(table: pd.DataFrame) -> str:
    wide = table.pivot(index="method", columns="rung", values="rho")
    counts = table.groupby("method")["n_trials"].first()
    header = "| method (trials) | " + " | ".join(f"epoch {r}" for r in wide.columns) + " |"
    lines = [header, "|" + "---|" * (len(wide.columns) + 1)]
    for method, row in wide.iterrows():
        cells = [f"{v:.2f}" if math.isfinite(v) else "—" for v in row]
        lines.append(f"| {method} ({int(counts[method])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.bench rungs", description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="a FIFO study folder STORAGE/NAME (trials.parquet, epochs.parquet)")
    p.add_argument("--at", default=",".join(map(str, DEFAULT_RUNGS)), help="candidate rungs (epochs), comma-separated")
    p.add_argument("--threshold", type=float, default=0.8, help="the ρ a rung must reach for every method")
    p.add_argument("--best-so-far", action="store_true",
                   help="rank by each trial's best objective up to the rung, not its value at the rung")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from study.analysis.loading import load_study

    study = load_study(args.study)
    try:
        rungs = tuple(sorted({int(v) for v in args.at.split(",") if v.strip()}))
    except ValueError:
        raise UsageError(f"--at {args.at}: give epochs as integers, e.g. 1,3,5,10") from None
    trials = study.trials
    usable = trials[(~trials["is_repeat"]) & (trials["status"] == "finished")]
    if usable.empty:
        raise UsageError(f"{study.path}: no finished searched trial: run a FIFO study with --samples N first")
    epochs_run = study.epochs.groupby("trial_id")["epoch"].max()
    full = usable[usable["trial_id"].map(epochs_run).eq(usable["trial_id"].map(epochs_run).max())]
    table = rung_correlations(study.epochs, full.set_index("trial_id")["method"], rungs, args.best_so_far)
    for row in table.to_dict("records"):
        print(json.dumps({"bench": "rungs", **{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                                for k, v in row.items()}}))
    print(markdown(table))
    rung = earliest_rung(table, args.threshold)
    print(f"earliest rung where every method's rank correlation with its best is >= {args.threshold:g}: "
          + (f"epoch {rung}" if rung is not None else "none (run FIFO)"))
    return 0


if __name__ == "__main__":
    import sys

    from study.cli import run_cli

    sys.exit(run_cli(main))
