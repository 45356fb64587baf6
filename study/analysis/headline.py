"""The headline comparison: each method's best configuration, over seeds where they exist.

For every method the best searched trial (highest ``best.val.objective`` among finished trials
that are not seed repeats) is its representative. When ``--repeat-best`` re-ran that configuration
with fresh seeds, the statistics are over those repeats only: the original was *selected* for its
score, so averaging it in would bias the mean upward (the winner's curse). Δm% compares each
method with the single-task baselines (best ``det_only`` for detection, best ``cls_only`` for the
view), and the cost ratios compare each method with the best dual-backbone configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from study.analysis.columns import TASK_METRIC
from study.analysis.loading import ACCURACY, COST, OBJECTIVE, order_methods
from study.analysis.stats import MeanCI, delta_m, mean_ci, relative_delta
from study.store.selection import best_trials
from trainables.wording import counted

METRICS = [*ACCURACY, *COST]
BASELINE_METHOD = {"det": "det_only", "view": "cls_only"}
REFERENCE = "dual"  # cost ratios are relative to this method


@dataclass
class MethodResult:
    method: str
    trial_id: str  # the representative (best searched) trial
    seeds: str  # "repeats" (statistics over --repeat-best seeds) or "single run"
    stats: dict[str, MeanCI]  # metric column -> mean ± CI
    values: dict[str, list[float]]  # metric column -> the per-seed values behind ``stats``
    delta: dict[str, float] = field(default_factory=dict)  # "det", "view", "m" -> %
    cost_ratio: dict[str, float] = field(default_factory=dict)  # cost column -> method / dual


@dataclass
class Headline:
    results: list[MethodResult]
    baselines: dict[str, float]  # task -> baseline score (missing tasks absent)
    notes: list[str]

    def get(self, method: str) -> MethodResult | None:
        return next((r for r in self.results if r.method == method), None)

    def table(self) -> pd.DataFrame:
        """One row per method: mean and CI half-width of every metric, Δ%, cost ratios."""
        rows = []
        for r in self.results:
            row = {"method": r.method, "trial_id": r.trial_id, "seeds": r.seeds,
                   "n": max((s.n for s in r.stats.values()), default=0)}
            for col, s in r.stats.items():
                row[col] = s.mean
                row[f"{col} ±"] = s.half_width
            row.update({f"Δ{k}%": v for k, v in r.delta.items()})
            row.update({f"{k} ×{REFERENCE}": v for k, v in r.cost_ratio.items()})
            rows.append(row)
        return pd.DataFrame(rows)


def best_searched(trials: pd.DataFrame, objective: str = OBJECTIVE) -> pd.DataFrame:
    """Per method, the finished non-repeat trial with the highest objective (study/store/selection.py, the selector the
    study and ``evaluate --best`` use too), methods in the report's fixed order."""
    best = best_trials(trials, objective, "max", k=1, per_method=True)
    order = order_methods(best["method"])
    return best.set_index("method").loc[order].reset_index()


def is_folded(trials: pd.DataFrame) -> bool:
    """Trials of several outer folds (``--folds``): each fold validates on its own development patients, so
    their validation scores do not rank across folds."""
    return "fold" in trials and trials["fold"].nunique() > 1


def representatives(trials: pd.DataFrame, objective: str = OBJECTIVE) -> list[tuple[str, str, pd.DataFrame, str]]:
    """Per method, in the report's order: (method, what it stands for, the trials its statistics pool, "repeats"
    or "single run").

    One split with a search: the best searched trial, and its --repeat-best re-runs where they exist (never the
    selected trial itself, the winner's curse). Folds, or no search (``--samples 0``): every finished re-run of
    the method's chosen configurations -- one per fold, each chosen on its own fold's patients, so no trial is
    ranked across folds."""
    finished = trials[trials["status"] == "finished"]
    reruns = finished[finished["repeat_of"] != ""]
    if is_folded(trials) or (len(reruns) and best_searched(trials, objective).empty):
        out = []
        for method in order_methods(reruns["method"].unique()):
            group = reruns[reruns["method"] == method]
            configs = list(dict.fromkeys(group["repeat_of"].astype(str)))
            folds = f", {counted(group['fold'].nunique(), 'fold')}" if "fold" in group else ""
            what = configs[0] if len(configs) == 1 else f"{counted(len(configs), 'chosen configuration')}{folds}"
            out.append((method, what, group, "repeats"))
        return out
    out = []
    for _, best in best_searched(trials, objective).iterrows():
        repeats = finished[finished["repeat_of"] == best["trial_id"]]
        out.append((best["method"], str(best["trial_id"]), repeats if len(repeats) else best.to_frame().T,
                    "repeats" if len(repeats) else "single run"))
    return out


def headline(trials: pd.DataFrame, confidence: float = 0.95, objective: str = OBJECTIVE) -> Headline:
    notes: list[str] = []
    results = []
    for method, what, group, seeds in representatives(trials, objective):
        values = {c: [float(v) for v in pd.to_numeric(group[c], errors="coerce") if math.isfinite(v)]
                  for c in METRICS if c in group}
        stats = {c: mean_ci(v, confidence) for c, v in values.items()}
        results.append(MethodResult(method, what, seeds, stats, values))
    if results and all(r.seeds == "single run" for r in results):
        notes.append("No seed repeats: every number is one training run, without a confidence interval "
                     "(run the study with --repeat-best K --seeds N for mean ± 95% CI).")

    baselines: dict[str, float] = {}
    for task, method in BASELINE_METHOD.items():
        base = next((r for r in results if r.method == method), None)
        score = base.stats[TASK_METRIC[task]].mean if base else math.nan
        if base is None:
            if method in set(trials["method"]):  # a method the study never ran needs no note
                notes.append(f"{_absent(trials, method)}: Δm% has no {task} baseline and is not computed.")
        elif not math.isfinite(score) or score == 0:
            notes.append(f"The {method} baseline scores {score:.4g} on {TASK_METRIC[task]}: relative Δ "
                         f"against it is undefined.")
        else:
            baselines[task] = score
    reference = next((r for r in results if r.method == REFERENCE), None)
    if reference is None and REFERENCE in set(trials["method"]):
        notes.append(f"{_absent(trials, REFERENCE)}: cost ratios against dual are not computed.")
    for r in results:
        scores = {t: r.stats[c].mean for t, c in TASK_METRIC.items() if c in r.stats}
        for task in TASK_METRIC:
            r.delta[task] = relative_delta(scores.get(task, math.nan), baselines.get(task, math.nan))
        both = len(baselines) == len(TASK_METRIC)
        r.delta["m"] = delta_m(scores, baselines) if both and r.method not in BASELINE_METHOD.values() \
            else math.nan
        for c in COST:
            num = r.stats[c].mean if c in r.stats else math.nan
            den = reference.stats[c].mean if reference and c in reference.stats else math.nan
            r.cost_ratio[c] = num / den if math.isfinite(num) and math.isfinite(den) and den > 0 else math.nan
    return Headline(results, baselines, notes)


def _absent(trials: pd.DataFrame, method: str) -> str:
    """Why a method the study ran has no finished result: its trials' statuses."""
    part = trials[trials["method"] == method]
    counts = ", ".join(f"{n} {s}" for s, n in part["status"].value_counts().items())
    return f"No finished {method} trial ({counts})"


# -- the held-out headline (headline.parquet, written by `study.run --test`: study/heldout/reruns.py) ------------
HEADLINE_FILE = "headline.parquet"
RUNS_FILE = "test_runs.parquet"


@dataclass
class Heldout:
    """``headline.parquet`` (one row per method) and ``test_runs.parquet`` (one row per scored re-run)."""

    table: pd.DataFrame
    runs: pd.DataFrame

    def _first(self, column: str) -> object:
        return self.table[column].iloc[0] if column in self.table and len(self.table) else None

    @property
    def split_by(self) -> str:
        return str(self._first("split_by") or "?")

    def where(self) -> str:
        """Which split the numbers come from, in words."""
        split, seed, data = self._first("split") or "test", self._first("split_seed"), self._first("data") or "?"
        if self.folds:
            return (f"patients never seen: {data} split by patient into {self._first('n_folds')} outer folds (seed "
                    f"{seed}), each fold's patients scored by the models trained and selected without them")
        if self.split_by == "patient":
            return (f"the {split} split of {data}: held-out patients (a seeded split by patient, seed {seed}: each "
                    "patient, as data.group_regex reads it from the file names, is in one split only)")
        return (f"the {split} split of {data} as its own folders define it (split by folders, seed {seed}; "
                "patients may appear in more than one split)")

    @property
    def folds(self) -> bool:
        """The interval's unit is the outer fold (``--folds``), not the seed on one split."""
        return self._first("interval_unit") == "fold"

    @property
    def leaks(self) -> bool:
        """The test split shares patients with the training or validation split (a folder split that leaks)."""
        return bool(self._first("split_leaks_patients") or False)

    def methods(self) -> list[str]:
        return [str(m) for m in self.table["method"]]


def read_heldout(study_dir: Path, notes: list[str] | None = None) -> Heldout | None:
    """The study's held-out headline, or None when it has none (no ``--test`` run). An unreadable file is a note."""
    path = Path(study_dir) / HEADLINE_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # a foreign or truncated file
        if notes is not None:
            notes.append(f"{HEADLINE_FILE} is unreadable ({type(err).__name__}): no held-out headline.")
        return None
    runs = pd.DataFrame()
    if (Path(study_dir) / RUNS_FILE).is_file():
        try:
            runs = pd.read_parquet(Path(study_dir) / RUNS_FILE)
        except Exception:
            if notes is not None:
                notes.append(f"{RUNS_FILE} is unreadable: the held-out figure shows no individual seeds.")
    if "method" not in table:
        if notes is not None:
            notes.append(f"{HEADLINE_FILE} has no method column: no held-out headline.")
        return None
    return Heldout(table.reset_index(drop=True), runs)
