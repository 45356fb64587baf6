"""The verdict: every pair of methods compared fold by fold (seeds averaged within a fold), with a paired 95% interval
corrected for the folds' overlapping training sets, and read for what it shows.

For two methods a and b and a held-out metric, the pairs are the outer folds both were scored on:
in each fold, each method's score is the mean over its re-runs there (its seeds), and the fold's
difference is a − b; the verdict is the mean difference over the folds with the two-sided Student-t
interval of that mean, df = folds − 1, its variance widened by Nadeau & Bengio's correction s²(1/K + n_test/n_train)
for the folds' overlapping training sets (study/heldout/correction.py; ``correction``, ``test_train_ratio``).
The unit is the fold — a set of patients never seen — so the interval counts how much the answer moves with
*which* patients are held out, the larger source of variance than the seed. Without folds (one split) the
pairs are the seeds both methods were re-run with (``unit`` = "seed", no correction): an interval over
training randomness on one set of test patients only.

Costs (measured alone, study/heldout/costs.py) are compared as ratios: the geometric mean of a / b over the
pairs, with the interval of the mean log ratio (corrected as the scores are), back-transformed.

``conclusion`` reads the 95% interval against no difference (0, or a ratio of 1) and the metric's equivalence
margin (study/heldout/margins.py, ``--margin``; column ``margin``):
- "method_a better" / "method_b better": the interval excludes no difference (by the metric's direction);
- "equivalent within ±m" (a ratio: "equivalent within ×r"): the whole interval lies inside the margin — the two
  one-sided tests at 2.5% each;
- "not resolved": the interval contains no difference but reaches past the margin: the data cannot say
  whether the methods differ by an amount that matters. Never read as "no difference";
- "too few pairs": one pair, no interval;
- "inconclusive": the data cannot tell (both methods at chance on the task, or a cost ratio's interval wider
  than a factor of 2 around 1; the rule is study/heldout/informative.py's), with the reason in ``reason``.

**Multiplicity.** A verdict makes many comparisons (every pair × every metric), so some "better" would come
by chance at 95% each. Each row carries its p-values (``p_value``: two-sided, of no difference;
``p_equivalence``: TOST's, of a difference beyond the margin) and its ``family`` — "primary" (the held-out
scores the metric registry marks headline: mAP@.5, mAP@.5:.95, view accuracy; declared before any verdict
ran), "secondary" (the other held-out scores: view accuracy per clip, macro-F1), "clinical" (jet present per
valve: sensitivity and specificity per clip and per study, study/heldout/clinical.py; only where test_runs.parquet
holds them, so a study scored before them has no such rows) or "costs" (measured ratios) — with
``n_comparisons``, the rows of that family with an interval (inconclusive ones included: they were tested too;
exact counts such as parameters, the same in every pair, are not tests and not counted).
``p_holm`` and ``p_equivalence_holm`` are Holm's step-down adjustments within the family,
and ``conclusion_holm`` the reading at family-wise 5%: "better" where p_holm < 0.05, "equivalent" where
p_equivalence_holm < 0.025 (the per-row rule's level), "not resolved" otherwise; with one comparison it is the
per-row conclusion.

Failures are counted, never dropped quietly: a re-run that diverged after a good epoch is scored at that epoch
(study/heldout/reruns.py); a fold (or seed) either method ran in but one of them has no score for is lost from
the pairs, and the row says how many were lost and why (``n_lost``, ``lost``); each method's failed re-runs
(diverged, errored, unscored) are counted beside (``n_failed_a``, ``n_failed_b``). A folds study's pairs are
folds even when one fold alone was scored (then: "too few pairs").

verdict.parquet: method_a, method_b, metric, kind ("difference" | "ratio"), mean_a and mean_b (each
method's own value over the pairs: the mean, for a cost the geometric mean, so mean_a / mean_b is the
ratio), diff_mean (mean difference, or geometric-mean ratio), diff_ci95 (the interval's half-width; for a
ratio on the log scale), ci_low, ci_high, n_pairs (the units both methods were scored in), unit ("fold" |
"seed"), correction ("nadeau-bengio" | "none"), test_train_ratio, margin, conclusion, reason, p_value,
p_equivalence, family, n_comparisons, p_holm, p_equivalence_holm, conclusion_holm, mixed_numerics (a mark:
"" when every scored re-run computed at one precision and memory format, else which ones and how many;
study/heldout/numerics.py), n_lost, lost, n_failed_a, n_failed_b.
"""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from study.analysis.common import fmt_score, fmt_sig
from study.analysis.loading import order_methods
from study.analysis.stats import Paired, geometric_mean, holm, paired_difference, paired_ratio
from study.heldout import margins as margin_rules
from study.heldout.clinical import verdict_jet_lines
from study.heldout.correction import UNCORRECTED, Correction, fold_correction, folds_without_table
from study.heldout.costs import COSTS, HIGHER_IS_BETTER
from study.heldout.informative import INCONCLUSIVE, RULE, Chance, chance, inconclusive_reason
from study.heldout.numerics import mixed_numerics
from study.store.selection import is_multi_task
from study.store.trials import write_atomic
from trainables.metrics.names import CLINICAL, REGISTRY, TEST_SHOWN, held_out, lookup
from trainables.wording import counted

VERDICT_FILE = "verdict.parquet"
CONFIDENCE = 0.95
METRICS = TEST_SHOWN  # map50, map, view_accuracy, view_macro_f1 (trainables/metrics/names.py)
COST_RATIOS = tuple(c for c in COSTS if c not in HIGHER_IS_BETTER)  # throughput is 1 / step time: said once
BETTER, EQUIVALENT, NOT_RESOLVED, FEW = "{} better", "equivalent within {}", "not resolved", "too few pairs"
ALPHA = 1 - CONFIDENCE  # a difference's level; an equivalence's is ALPHA / 2 per side (the interval inside the margin)
# Holm's families: the primary scores are the test metrics the registry marked headline before any verdict was
# run (trainables/metrics/names.py: mAP@.5, mAP@.5:.95, view accuracy); the other scores are secondary
PRIMARY, SECONDARY, COST_FAMILY = "primary", "secondary", "costs"
FAMILIES = (PRIMARY, SECONDARY, CLINICAL, COST_FAMILY)  # CLINICAL: jet present per valve, a family of its own
PRIMARY_METRICS = tuple(m for m in METRICS if REGISTRY[f"val.{m}"].headline)
COLUMNS = {"method_a": pa.string(), "method_b": pa.string(), "metric": pa.string(), "kind": pa.string(),
           "mean_a": pa.float64(), "mean_b": pa.float64(), "diff_mean": pa.float64(), "diff_ci95": pa.float64(),
           "ci_low": pa.float64(), "ci_high": pa.float64(),
           "n_pairs": pa.int64(), "unit": pa.string(), "correction": pa.string(), "test_train_ratio": pa.float64(),
           "margin": pa.float64(), "conclusion": pa.string(), "reason": pa.string(),
           # multiplicity (holm_rows)
           "p_value": pa.float64(), "p_equivalence": pa.float64(), "family": pa.string(),
           "n_comparisons": pa.int64(), "p_holm": pa.float64(), "p_equivalence_holm": pa.float64(),
           "conclusion_holm": pa.string(),
           # "" when every scored re-run computed at one precision and memory format, else which ones (a mark)
           "mixed_numerics": pa.string(),
           # failure accounting (verdict_rows: lost_units, failed_per_method)
           "n_lost": pa.int64(), "lost": pa.string(), "n_failed_a": pa.int64(), "n_failed_b": pa.int64()}


def method_pairs(methods: list[str], against: list[str] | None = None) -> list[tuple[str, str]]:
    """Every unordered pair, in the report's order of methods, pairs of two multi-task methods first; with
    ``against`` (``--against``: the planned comparisons), only the pairs with one of those methods in them, so
    Holm's families count the comparisons the study set out to make (eight methods: 13 pairs against two
    references instead of all 28). A name of ``against`` that no re-run has is left out here; the commands check
    names before anything runs."""
    ordered = order_methods(methods)
    pairs = [p for p in combinations(ordered, 2) if not against or p[0] in against or p[1] in against]
    return sorted(pairs, key=lambda p: not (is_multi_task(p[0]) and is_multi_task(p[1])))


def unit_means(runs: pd.DataFrame, column: str, unit: str) -> dict[str, dict[Any, float]]:
    """method -> unit (fold or seed) -> the mean of ``column`` over that method's runs in it (finite only)."""
    out: dict[str, dict[Any, float]] = {}
    if column not in runs:
        return out
    key = _unit_key(unit)
    values = runs.assign(_v=pd.to_numeric(runs[column], errors="coerce"))
    values = values[values["_v"].map(math.isfinite)]
    for (method, u), group in values.groupby(["method", key], sort=True):
        out.setdefault(str(method), {})[u] = float(group["_v"].mean())
    return out


def conclusion(p: Paired, higher_is_better: bool, margin: float, margin_said: str) -> str:
    """The interval's reading: better (excludes no difference), equivalent (inside ±``margin``, on the tested
    scale), not resolved (neither), or too few pairs."""
    if p.n < 2 or not math.isfinite(p.half_width):
        return FEW
    null = 1.0 if p.kind == "ratio" else 0.0
    if p.low > null:
        return BETTER.format("method_a" if higher_is_better else "method_b")
    if p.high < null:
        return BETTER.format("method_b" if higher_is_better else "method_a")
    bound = math.exp(margin) if p.kind == "ratio" else margin
    low_bound = 1.0 / bound if p.kind == "ratio" else -bound
    if low_bound < p.low and p.high < bound:
        return EQUIVALENT.format(margin_said)
    return NOT_RESOLVED


def correction_for(study_dir: Path | None, runs: pd.DataFrame) -> Correction:
    """The fold correction of a folds study (its folds.parquet; K equal folds where the file is missing), or none
    for seeds on one split."""
    if "fold" not in runs:
        return UNCORRECTED
    path = Path(study_dir) / "folds.parquet" if study_dir is not None else None
    if path is not None and path.is_file():
        return fold_correction(pd.read_parquet(path))
    return folds_without_table(int(pd.to_numeric(runs["fold"]).max()) + 1)


def verdict_rows(runs: pd.DataFrame, costs: pd.DataFrame, margins: dict[str, float] | None = None,
                 correction: Correction | None = None,
                 pairs: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """One row per pair of methods and metric (held-out scores, then cost ratios), with Holm's adjustment.

    runs: test_runs.parquet (``method``, ``train.seed``, ``test.<metric>``, and ``fold`` with folds);
    costs: costs.parquet (``method``, ``cost.*``, and ``fold`` with folds); ``margins``: metric -> margin
    (study/heldout/margins.py; the defaults where None); ``correction``: the fold correction (``correction_for``;
    none for seeds, K equal folds for folds where None); ``pairs``: the (method_a, method_b) pairs to compare
    (every pair of ``runs``' methods where None), Holm's families counting only these."""
    unit = "fold" if "fold" in runs else "seed"  # a folds study pairs folds, even when one alone was scored
    margins = margins or dict(margin_rules.DEFAULT_MARGINS)
    correction = correction or correction_for(None, runs)
    if unit == "fold" and "fold" not in costs:
        costs = costs.assign(fold=0)
    # each metric's per-unit means once, shared by every pair; costs: one measurement per method (and fold),
    # so their pairs are the folds, or the one split (a single pair: no interval)
    # METRICS, and the jet scores (CLINICAL) the runs hold
    scores = {m: unit_means(runs, f"test.{m}", unit) for m in held_out(runs.columns, ("shown",))}
    majority = unit_means(runs, "test.view_majority_share", unit)  # the view task's chance level, per unit
    cost_means = {c: unit_means(costs.assign(**{"train.seed": 0}), c, unit) if len(costs) else {}
                  for c in COST_RATIOS}
    ran, why, n_failed = units_run(runs, unit), failure_reasons(runs, unit), failed_per_method(runs)
    ran_costs = units_run(costs, unit) if len(costs) else {}
    rows = []
    for a, b in pairs if pairs is not None else method_pairs(list(dict.fromkeys(runs["method"]))):
        counts = {"n_failed_a": n_failed.get(a, 0), "n_failed_b": n_failed.get(b, 0)}
        at_chance = _chance(a, b, scores, majority)
        for m, per in scores.items():
            metric = lookup(f"val.{m}")
            rows.append({**_row(a, b, m, per, paired_difference, metric.direction != "min", unit,
                                at_chance, margins, correction),
                         "family": CLINICAL if metric.group == CLINICAL else
                         PRIMARY if m in PRIMARY_METRICS else SECONDARY,
                         **counts, **lost_units(a, b, per, ran, why, unit)})
        for c, per in cost_means.items():
            rows.append({**_row(a, b, c, per, paired_ratio, c in HIGHER_IS_BETTER, unit, at_chance, margins,
                                correction), "family": COST_FAMILY,
                         **counts, **lost_units(a, b, per, ran_costs, {}, unit)})
    mixed = mixed_numerics(runs)
    return [{**r, "mixed_numerics": mixed} for r in holm_rows(rows)]


def holm_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with its family's ``n_comparisons``, Holm-adjusted p-values and ``conclusion_holm``."""
    for family in FAMILIES:
        tested = [r for r in rows if r["family"] == family and _tested(r)]
        for r, p, q in zip(tested, holm([r["p_value"] for r in tested]),
                           holm([r["p_equivalence"] for r in tested]), strict=True):
            r["p_holm"], r["p_equivalence_holm"] = _num(p), _num(q)
        for r in rows:
            if r["family"] == family:
                r["n_comparisons"] = len(tested)
    for r in rows:
        r.setdefault("p_holm", None)
        r.setdefault("p_equivalence_holm", None)
        r["conclusion_holm"] = _holm_conclusion(r)
    return rows


def _tested(row: dict[str, Any]) -> bool:
    """A comparison with an interval that is a test: two pairs or more, and not an exact count (zero spread)."""
    return row["p_value"] is not None and row["diff_ci95"] is not None and row["diff_ci95"] > 0


def _holm_conclusion(row: dict[str, Any]) -> str:
    said = row["conclusion"]
    if said in (FEW, INCONCLUSIVE) or not _tested(row):
        return said
    if row["p_holm"] is not None and row["p_holm"] < ALPHA:
        return said if said.endswith("better") else NOT_RESOLVED  # (cannot differ: the interval excludes 0)
    if row["p_equivalence_holm"] is not None and row["p_equivalence_holm"] < ALPHA / 2:
        return said if said.startswith("equivalent") else NOT_RESOLVED
    return NOT_RESOLVED


def _chance(a: str, b: str, scores: dict[str, dict[str, dict[Any, float]]],
            majority: dict[str, dict[Any, float]]) -> Chance:
    """Whether a and b both score at chance, from their means over the units both were scored on."""
    def mean(per: dict[str, dict[Any, float]], method: str, units: list[Any]) -> float:
        values = [per[method][u] for u in units if u in per.get(method, {})]
        return sum(values) / len(values) if values else math.nan

    def shared(per: dict[str, dict[Any, float]]) -> list[Any]:
        return sorted(set(per.get(a, {})) & set(per.get(b, {})))

    det, view = shared(scores.get("map50", {})), shared(scores.get("view_accuracy", {}))
    share = [v for m in (a, b) for u, v in majority.get(m, {}).items() if u in view]
    return chance(mean(scores.get("map50", {}), a, det), mean(scores.get("map50", {}), b, det),
                  mean(scores.get("view_accuracy", {}), a, view), mean(scores.get("view_accuracy", {}), b, view),
                  sum(share) / len(share) if share else math.nan)


# -- failures: counted and said, never dropped quietly -------------------------------------------------------
def _unit_key(unit: str) -> str:
    return "fold" if unit == "fold" else "train.seed"


def units_run(table: pd.DataFrame, unit: str) -> dict[str, set[Any]]:
    """method -> the units (folds, or seeds) it has any row in: re-runs that ran, scored or not."""
    key = _unit_key(unit)
    if key not in table:
        table = table.assign(**{key: 0})
    return {str(m): set(g[key]) for m, g in table.groupby("method", sort=False)}


def failure_reasons(runs: pd.DataFrame, unit: str) -> dict[tuple[str, Any], str]:
    """(method, unit) -> its failed re-runs there, e.g. "2 diverged, 1 error, 1 unscored"."""
    from study.heldout.reruns import failed  # late: reruns imports the scorer (torch)

    bad = runs[failed(runs)] if len(runs) else runs
    out: dict[tuple[str, Any], str] = {}
    for (method, u), group in bad.groupby(["method", _unit_key(unit)], sort=True):
        counts = group["status"].astype(str).value_counts() if "status" in group else pd.Series(dtype=int)
        text = ", ".join(f"{n} {status}" for status, n in counts.items())
        unscored = int((~group["scored"].astype(bool)).sum()) if "scored" in group else 0
        out[(str(method), u)] = text + (f", {unscored} unscored" if unscored else "")
    return out


def failed_per_method(runs: pd.DataFrame) -> dict[str, int]:
    """method -> re-runs that failed (diverged, errored, or without a score; study/heldout/reruns.py: ``failed``)."""
    from study.heldout.reruns import failed

    if runs.empty or "method" not in runs:
        return {}
    return {str(m): int(n) for m, n in failed(runs).groupby(runs["method"]).sum().items()}


def lost_units(a: str, b: str, per: dict[str, dict[Any, float]], ran: dict[str, set[Any]],
               why: dict[tuple[str, Any], str], unit: str) -> dict[str, Any]:
    """The units either method ran in that are not among the pair's (one of the two has no score there):
    ``n_lost`` and ``lost``, e.g. "fold 2: dual has no score (3 diverged)". A metric one of the two has no score
    for anywhere (a single-task method's other task) loses nothing: the pair has no common scores by design
    (a method whose every re-run failed shows in ``n_failed_*``)."""
    if not per.get(a) or not per.get(b):
        return {"n_lost": 0, "lost": ""}
    shared = set(per[a]) & set(per[b])
    lost = sorted((ran.get(a, set()) | ran.get(b, set())) - shared)
    said = []
    for u in lost:
        parts = [f"{m} " + ("did not run" if u not in ran.get(m, set()) else
                            f"has no score ({why[(m, u)]})" if (m, u) in why else "has no finite score")
                 for m in (a, b) if u not in per[m]]
        said.append(f"{unit} {u}: {' and '.join(parts)}")
    return {"n_lost": len(lost), "lost": "; ".join(said)}


def _row(a: str, b: str, metric: str, per: dict[str, dict[Any, float]], compare: Any, higher: bool,
         unit: str, at_chance: Chance, margins: dict[str, float], correction: Correction) -> dict[str, Any]:
    shared = sorted(set(per.get(a, {})) & set(per.get(b, {})))
    xa, xb = [per[a][u] for u in shared], [per[b][u] for u in shared]
    p: Paired = compare(xa, xb, CONFIDENCE, correction.test_train_ratio)
    margin = margin_rules.test_scale(metric, margins)
    said = conclusion(p, higher, margin, margin_rules.said(metric, margins))
    reason = inconclusive_reason(metric, p.kind, p.low, p.high, at_chance) if said != FEW else ""
    return {"method_a": a, "method_b": b, "metric": metric, "kind": p.kind, "mean_a": _own(xa, p.kind),
            "mean_b": _own(xb, p.kind), "diff_mean": _num(p.estimate), "diff_ci95": _num(p.half_width),
            "ci_low": _num(p.low), "ci_high": _num(p.high), "n_pairs": p.n, "unit": unit,
            "correction": correction.name, "test_train_ratio": correction.test_train_ratio,
            "margin": margin_rules.margin_of(metric, margins),
            "conclusion": INCONCLUSIVE if reason else said, "reason": reason,
            "p_value": _num(p.p_value()), "p_equivalence": _num(p.p_equivalence(margin))}


def _own(values: list[float], kind: str) -> float | None:
    """A method's own value over the pairs: the mean, or for a ratio's costs the geometric mean (so that
    mean_a / mean_b is the ratio reported)."""
    if kind == "ratio":
        return _num(geometric_mean(values))
    return _num(sum(values) / len(values)) if values else None


def write_verdict(study_dir: Path, runs: pd.DataFrame, costs: pd.DataFrame,
                  margins: dict[str, float] | None = None, against: list[str] | None = None) -> Path:
    """verdict.parquet in ``study_dir``, corrected by its folds.parquet (``correction_for``); ``against``: the
    pairs of ``method_pairs``."""
    path = Path(study_dir) / VERDICT_FILE
    pairs = method_pairs(list(dict.fromkeys(runs["method"])), against)
    write_atomic(verdict_table(verdict_rows(runs, costs, margins, correction_for(study_dir, runs), pairs=pairs)), path)
    return path


def verdict_table(rows: list[dict[str, Any]]) -> pa.Table:
    """``verdict_rows``' rows as verdict.parquet's table (its COLUMNS, in order)."""
    return pa.table({k: pa.array([r[k] for r in rows], type=t) for k, t in COLUMNS.items()},
                    schema=pa.schema(list(COLUMNS.items())))


def verdict_lines(table: pd.DataFrame) -> list[str]:
    """One line per pair of methods: each score's paired difference and the main cost ratio, each beside the
    two methods' own values (scores with three decimals, costs with three significant figures and a unit)."""
    lines = []
    for (a, b), group in table.groupby(["method_a", "method_b"], sort=False):
        parts = []
        for _, r in group.iterrows():
            if r["metric"] not in (*METRICS, "cost.train_step_ms"):
                continue
            said = _short(r["conclusion"], a, b)
            holm_said = _short(str(r.get("conclusion_holm") or r["conclusion"]), a, b)
            said += f"; {holm_said} after Holm" if holm_said != said else ""
            if r["kind"] == "ratio":
                interval = f" [{fmt_sig(r['ci_low'])}, {fmt_sig(r['ci_high'])}]" if _finite(r["ci_low"]) else ""
                own = f"{fmt_sig(r.get('mean_a'))} vs {fmt_sig(r.get('mean_b'))} ms, " if "mean_a" in r else ""
                parts.append(f"step time {own}×{fmt_sig(r['diff_mean'])}{interval} ({said})")
            elif _finite(r["diff_mean"]):
                half = f" ± {fmt_score(r['diff_ci95'])}" if _finite(r["diff_ci95"]) else ""
                own = f"{fmt_score(r.get('mean_a'))} vs {fmt_score(r.get('mean_b'))}, " if "mean_a" in r else ""
                parts.append(f"{r['metric']} {own}{fmt_score(r['diff_mean'], signed=True)}{half} ({said})")
        scores = group[group["metric"].isin(METRICS)]
        n, unit = int((scores if len(scores) else group)["n_pairs"].max()), group["unit"].iloc[0]
        lines.append(f"  {a} vs {b} ({counted(n, unit)}{failure_note(group, a, b)}): "
                     + ("; ".join(parts) or "no common scores"))
    return lines


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def failure_note(group: pd.DataFrame, a: str, b: str) -> str:
    """The console's word on a pair's failures: units lost from the pairs (the scores' worst) and failed re-runs."""
    if "n_lost" not in group:
        return ""
    scores = group[group["metric"].isin(METRICS)]
    worst = scores.loc[scores["n_lost"].idxmax()] if len(scores) else None
    note = f"; {int(worst['n_lost'])} LOST: {worst['lost']}" if worst is not None and worst["n_lost"] else ""
    failed = [f"{m} {int(group[col].iloc[0])}" for m, col in ((a, "n_failed_a"), (b, "n_failed_b"))
              if group[col].iloc[0]]
    return note + (f"; failed re-runs: {', '.join(failed)}" if failed else "")


def _short(text: str, a: str, b: str) -> str:
    """The conclusion with the methods' names (files from before the margins said "no difference at 95%": an
    interval that contains 0 without a margin is "not resolved")."""
    return text.replace("method_a", a).replace("method_b", b).replace("no difference at 95%", NOT_RESOLVED)


def reading_lines(table: pd.DataFrame) -> list[str]:
    """What the intervals are and how they are read: the correction, the margins, the number of comparisons."""
    first = table.iloc[0]
    ratio = first.get("test_train_ratio")
    corrected = (f"widened for the folds' overlapping training sets (Nadeau–Bengio: variance × (1/K + n_test/n_train), "
                 f"n_test/n_train = {ratio:.3f} in patients)" if first.get("correction") == "nadeau-bengio"
                 else "not corrected (independent pairs)" if "correction" in table else
                 "NOT corrected for the folds' overlapping training sets (a file from before the correction: "
                 "rebuild it with python -m study.verdict)")
    lines = [f"verdict: each interval is {corrected}"]
    if "margin" in table:
        shown = table.drop_duplicates("metric")
        said = ", ".join(f"{r['metric']} {margin_rules.said(str(r['metric']), {str(r['metric']): float(r['margin'])})}"
                         for _, r in shown.iterrows()
                         if r["metric"] in (*METRICS, "cost.train_step_ms") and _finite(r["margin"]))
        lines.append(f"verdict: equivalent = the whole interval inside the margin ({said}); not resolved = it "
                     "contains no difference but reaches past the margin (not evidence of equality)")
    mixed = table["mixed_numerics"].iloc[0] if "mixed_numerics" in table else ""
    if mixed:
        lines.append(f"verdict: WARNING: the re-runs computed at different precisions or memory formats ({mixed}): "
                     "these differences compare numerics as well as methods (test_runs.parquet: eff.precision, "
                     "eff.memory_format)")
    if "n_comparisons" in table:
        counts = table.drop_duplicates("family").set_index("family")["n_comparisons"]
        lines.append("verdict: " + ", ".join(f"{counted(int(n), 'comparison')} of {f}" for f, n in counts.items())
                     + "; where Holm's family-wise 5% reading differs from the row's own, the line says so")
    return lines


def print_verdict(path: Path) -> None:
    table = pd.read_parquet(path)
    if table.empty:
        print("verdict: fewer than two methods were scored")
        return
    unit = table["unit"].iloc[0]
    what = ("paired by outer fold (patients never seen; seeds averaged within a fold first)" if unit == "fold"
            else "paired by seed on ONE split: the interval covers training randomness only, not which patients "
                 "were held out (use --folds K)")
    print(f"\nverdict: method a − method b on the held-out split, mean and 95% CI, {what}")
    for line in reading_lines(table):
        print(line)
    for line in [*verdict_lines(table), *verdict_jet_lines(table)]:
        print(line)
    if (table["conclusion"] == INCONCLUSIVE).any():
        print(f"verdict: {RULE}")
    print(f"verdict: {path}")


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None
