"""A study's held-out headline and paired verdict as Markdown tables (``python -m study.analyze STUDY
--markdown``): what a README or a paper quotes, printed from the study's own Parquet files, so the text
cannot drift from the numbers (tests/test_readme_results.py holds the README to this output).

Reads ``headline.parquet`` and ``verdict.parquet``: a folder of a study's small result files (as docs/results/
keeps them, without trials or checkpoints) is enough; where it also has epochs.parquet, a table says what the
study cost to run (study/analysis/compute.py); where ``python -m study.tuned`` has written tuning_gain.parquet and
chosen_configs.parquet beside them, two more say what tuning did to each method and what each fold's search chose,
and where the study keeps its Optuna storage, one says which hyperparameters mattered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from study.analysis.common import fmt_count, fmt_score, fmt_score_ci, fmt_sig, tick_text
from study.analysis.headline import HEADLINE_FILE
from study.heldout.chosen import CHOSEN_FILE
from study.heldout.tuning_gain import TUNING_GAIN_FILE
from study.heldout.verdict import VERDICT_FILE

SCORES = (("map50", "mAP@.5"), ("map", "mAP@.5:.95"), ("view_accuracy", "view accuracy"),
          ("view_clip_accuracy", "view accuracy per clip"), ("view_macro_f1", "view macro-F1"))
COSTS = (("cost.params", "parameters"), ("cost.gflops", "GFLOPs"), ("cost.peak_mem_mb", "peak training memory"),
         ("cost.train_step_ms", "training step time"), ("cost.latency_ms_b1", "latency, batch 1"))


def headline_table(study_dir: Path) -> str:
    """One row per method: each score's mean ± 95% half-width over the interval's unit (folds), the re-runs
    scored and failed, the counted costs."""
    table = pd.read_parquet(Path(study_dir) / HEADLINE_FILE)
    imgsz = _first(table, "cost.imgsz")
    header = ["method", *(name for _, name in SCORES), "re-runs (failed)", "parameters",
              f"GFLOPs ({imgsz:.0f} px)" if math.isfinite(imgsz) else "GFLOPs"]
    rows = []
    for r in table.to_dict("records"):
        scores = [fmt_score_ci(_num(r, f"test.{m}.mean"), _num(r, f"test.{m}.ci95")) for m, _ in SCORES]
        params = _num(r, "cost.params")
        rows.append([str(r["method"]), *scores, f"{int(r['n_runs'])} ({int(r['n_failed'])})",
                     fmt_count(params), fmt_sig(_num(r, "cost.gflops"))])
    return _markdown(header, rows)


def verdict_table(study_dir: Path, file: str = VERDICT_FILE) -> str:
    """One row per pair: each score's paired difference a − b, mean ± 95% half-width, and the verdict's word
    (``file``: verdict.parquet, or tuning_gain.parquet, whose pairs are a method searched and at its default)."""
    def cell(r: dict, a: str, b: str) -> str:
        said = _said(str(r["conclusion"]), a, b)
        text = f"{fmt_score(r['diff_mean'], signed=True)} ± {fmt_score(r['diff_ci95'])} ({said}{_holm(r, a, b)})"
        return f"**{text}**" if said.endswith("better") else text

    return _pair_table(study_dir, ["a vs b", *(f"Δ {name}" for _, name in SCORES)], SCORES, "vs", cell, file)


def chosen_frame(study_dir: Path) -> pd.DataFrame:
    """chosen_configs.parquet as a person reads it (this table, and the report's Tuning section): one row per method
    and searched hyperparameter, its range on its own scale, the value each fold's search chose with its place in
    the range (0 = low end, 1 = high end), and how many folds chose at an edge."""
    chosen = pd.read_parquet(Path(study_dir) / CHOSEN_FILE)
    folds = sorted(chosen["fold"].unique())
    rows = []
    for (method, param), group in chosen.groupby(["method", "param"], sort=False):
        by_fold = {int(r["fold"]): r for r in group.to_dict("records")}
        first = group.iloc[0]
        scale = ", log" if bool(first["log"]) else ""
        rows.append({"method": str(method), "hyperparameter": str(param),
                     "range": f"{tick_text(first['low'])} – {tick_text(first['high'])}{scale}",
                     **{f"fold {f}": f"{fmt_sig(by_fold[f]['value'])} ({by_fold[f]['position']:.2f})"
                        if f in by_fold else "—" for f in folds},
                     "at an edge": f"{int(group['at_edge'].sum())} of {len(group)}"})
    return pd.DataFrame(rows)


def chosen_table(study_dir: Path) -> str:
    """``chosen_frame`` as Markdown."""
    frame = chosen_frame(study_dir)
    return _markdown(list(frame.columns), frame.values.tolist())


def cost_table(study_dir: Path) -> str:
    """One row per pair: each cost's ratio a / b (geometric mean over folds) with its 95% interval."""
    def cell(r: dict, a: str, b: str) -> str:
        interval = "" if r["ci_low"] == r["ci_high"] else f" [{fmt_sig(r['ci_low'])}, {fmt_sig(r['ci_high'])}]"
        return f"{fmt_sig(r['diff_mean'])}×{interval} ({_said(str(r['conclusion']), a, b)}{_holm(r, a, b)})"

    return _pair_table(study_dir, ["a / b", *(name for _, name in COSTS)], COSTS, "/", cell)


def importance_table(study_dir: Path) -> str:
    """One row per method and searched hyperparameter, most important first: its PED-ANOVA importance for
    reaching the method's best trials (study/analysis/importance.py; a --folds study's folds pooled, each
    trial's objective centred on its fold's median) and Spearman's ρ of its value with the objective (> 0: higher
    values went with better trials); then a line on how far the ranking can be trusted. "" where the study
    keeps no Optuna storage."""
    from study.analysis.importance import RELIABLE_TRIALS, storage_importances

    found = storage_importances(study_dir)
    rows = [[method, param, f"{value:.2f}", fmt_score(imp.directions.get(param, math.nan), signed=True),
             str(imp.n_trials)]
            for method, imp in found.items() for param, value in imp.values.items()]
    if not rows:
        return ""
    few = {method: imp.n_trials for method, imp in found.items() if imp.caution}
    note = (f"\n\nFewer than {RELIABLE_TRIALS} completed trials ("
            + ", ".join(f"{m} {n}" for m, n in few.items())
            + "): PED-ANOVA's top 10% holds fewer than the 5 trials Optuna advises, so the ranking is a hint, "
              "not a finding." if few else "")
    return _markdown(["method", "hyperparameter", "importance", "ρ with the objective", "trials"], rows) + note


def _pair_table(study_dir: Path, header: list[str], metrics: tuple[tuple[str, str], ...], joiner: str,
                cell: Callable[[dict, str, str], str], file: str = VERDICT_FILE) -> str:
    """verdict.parquet (or a file of its columns) as one row per pair of methods and one cell per metric (``—``
    where it has none)."""
    table = pd.read_parquet(Path(study_dir) / file)
    rows = []
    for (a, b), pair in table.groupby(["method_a", "method_b"], sort=False):
        by_metric = {str(r["metric"]): r for r in pair.to_dict("records")}
        rows.append([f"{a} {joiner} {b}", *(cell(by_metric[m], a, b) if m in by_metric else "—" for m, _ in metrics)])
    return _markdown(header, rows)


def missing_files(study_dir: Path) -> list[str]:
    """The files the tables need that ``study_dir`` lacks (empty: it has both)."""
    return [name for name in (HEADLINE_FILE, VERDICT_FILE) if not (Path(study_dir) / name).is_file()]


def markdown(study_dir: Path) -> str:
    """The three tables, each under a line saying what it is; what tuning did and what the searches chose where
    ``python -m study.tuned`` wrote them; and what the study cost to run where its trial or re-run epochs are
    there to count (study/analysis/compute.py)."""
    out = (f"Held-out scores (mean ± 95% half-width over the interval's unit):\n\n{headline_table(study_dir)}\n\n"
           f"Paired differences a − b:\n\n{verdict_table(study_dir)}\n\n"
           f"Cost ratios a / b:\n\n{cost_table(study_dir)}\n\n{reading(study_dir)}\n")
    if (Path(study_dir) / TUNING_GAIN_FILE).is_file():
        out += (f"\nTuning, each method searched − at its default, paired by fold (python -m study.tuned):\n\n"
                f"{verdict_table(study_dir, TUNING_GAIN_FILE)}\n")
    importance = importance_table(study_dir)
    if importance:
        out += f"\nWhich hyperparameters mattered, per method:\n\n{importance}\n"
    if (Path(study_dir) / CHOSEN_FILE).is_file():
        out += (f"\nWhat each fold's search chose (place in the range: 0 = low end, 1 = high end):\n\n"
                f"{chosen_table(study_dir)}\n")
    if (Path(study_dir) / "epochs.parquet").is_file() or list(Path(study_dir).glob("fold-*/epochs.parquet")):
        from study.analysis.compute import compute_table
        from study.analysis.loading import load_study

        out += f"\nWhat it cost to run:\n\n{compute_table(load_study(study_dir))}\n"
    return out


def reading(study_dir: Path) -> str:
    """How the tables' intervals were built and are read, from verdict.parquet (the console's words)."""
    from study.heldout.verdict import reading_lines

    return "\n".join(line.removeprefix("verdict: ") for line in
                     reading_lines(pd.read_parquet(Path(study_dir) / VERDICT_FILE)))


def _said(conclusion: str, a: str, b: str) -> str:
    """The conclusion with the methods' names (a file from before the margins said "no difference at 95%", which
    an interval containing 0 does not show: "not resolved")."""
    return conclusion.replace("method_a", a).replace("method_b", b).replace("no difference at 95%", "not resolved")


def _holm(row: dict, a: str, b: str) -> str:
    """``; not resolved after Holm`` where the family-wise reading differs from the row's own, else ""."""
    holm = row.get("conclusion_holm")
    if not isinstance(holm, str) or holm == row["conclusion"]:
        return ""
    return f"; {_said(holm, a, b)} after Holm"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _num(row: dict, key: str) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def _first(table: pd.DataFrame, column: str) -> float:
    return float(table[column].iloc[0]) if column in table and len(table) else math.nan
