"""The report's section on valves and views (held-out): AP@0.5 per valve, view recall per view beside view accuracy
and the majority view's share, and jet present per valve per clip and per study (study/heldout/clinical.py) with the
verdict's clinical family. Read from headline.parquet and verdict.parquet; a study scored before these columns
existed shows what it has (AP and recall are in every test_runs.parquet, jet scores only in newer ones)."""

from __future__ import annotations

import html
import math

import pandas as pd

from study.analysis.common import cell_float, fmt_score, fmt_score_ci
from study.analysis.headline import Heldout
from study.analysis.html import Section
from study.analysis.summary import html_table
from study.heldout.clinical import RATE_LABEL, RULE, valves
from trainables.metrics.clinical import LEVELS, RATES
from trainables.metrics.names import CLINICAL, label

SPLIT = "test"


def valves_section(held: Heldout, verdict: pd.DataFrame | None) -> Section | None:
    """The section, or None where headline.parquet has neither per-class scores nor jet scores."""
    table = held.table
    per_class = _per_class_table(table)
    jets = _jet_table(table)
    compared = _jet_verdict_table(verdict) if verdict is not None else pd.DataFrame()
    if per_class.empty and jets.empty:
        return None
    unit = "outer folds" if held.folds else "re-runs (seeds on one split)"
    text = (f"Held-out, mean ± 95% CI over the {unit}, as the headline above. AP@0.5 per valve and view recall per "
            "view; the majority view's share is what always naming the test split's most common view scores, the "
            "level view accuracy must beat.")
    blocks = [html_table(per_class)] if not per_class.empty else []
    if not jets.empty:
        text += (f" <b>Jet present, per valve</b>: {html.escape(RULE)}. Sensitivity and specificity are compared "
                 "between methods in the verdict's <i>clinical</i> family (Holm's adjustment within it, so the primary "
                 "and secondary families are as they were); PPV and NPV follow from those and the prevalence the "
                 "two methods share.")
        blocks += ["<h3>Jet present, per valve</h3>", html_table(jets)]
        if not compared.empty:
            blocks += ["<h3>Jet present: paired differences a − b (verdict, clinical family)</h3>",
                       html_table(compared)]
    return Section("valves", "Per valve and per view (held-out)", text, blocks)


def _per_class_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method: view accuracy with the majority view's share, AP@0.5 per valve, view recall per view."""
    families = [c.removeprefix(f"{SPLIT}.").removesuffix(".mean") for c in table.columns
                if c.endswith(".mean") and c.startswith((f"{SPLIT}.ap50_", f"{SPLIT}.view_recall_"))]
    if not families:
        return pd.DataFrame()
    rows = []
    for _, r in table.iterrows():
        row = {"method": r["method"], "view accuracy": _ci(r, "view_accuracy"),
               "majority view's share": _ci(r, "view_majority_share")}
        row.update({label(f"val.{m}"): _ci(r, m) for m in families})
        rows.append(row)
    return pd.DataFrame(rows)


def _jet_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method, valve and level: sensitivity, specificity, PPV, NPV (mean ± 95% CI)."""
    rows = []
    for _, r in table.iterrows():
        for valve in valves(table.columns, SPLIT):
            for level in LEVELS:
                rows.append({"method": r["method"], "valve": valve, "per": level,
                             **{RATE_LABEL[rate]: _ci(r, f"jet_{level}_{rate}_{valve}") for rate in RATES}})
    return pd.DataFrame(rows)


def _jet_verdict_table(verdict: pd.DataFrame) -> pd.DataFrame:
    """The verdict's clinical rows: one per pair, valve score and level."""
    if "family" not in verdict:
        return pd.DataFrame()
    rows = []
    for _, r in verdict[verdict["family"] == CLINICAL].iterrows():
        half = cell_float(r["diff_ci95"])
        estimate = fmt_score(cell_float(r["diff_mean"]), signed=True) + (
            f" ± {fmt_score(half)}" if math.isfinite(half) else "")
        said = [str(r.get(k) or r["conclusion"]).replace("method_a", r["method_a"]).replace("method_b", r["method_b"])
                for k in ("conclusion", "conclusion_holm")]
        reason = r.get("reason") if isinstance(r.get("reason"), str) and r.get("reason") else ""
        rows.append({"method a": r["method_a"], "method b": r["method_b"], "metric": label(f"val.{r['metric']}"),
                     "a": fmt_score(cell_float(r.get("mean_a"))), "b": fmt_score(cell_float(r.get("mean_b"))),
                     "estimate (95% CI)": estimate, "pairs": int(r["n_pairs"]),
                     "verdict": f"{said[0]} ({reason})" if reason else said[0],
                     "after Holm": f"{said[1]} (exact: not a test)" if half == 0 else said[1]})
    return pd.DataFrame(rows)


def _ci(row: pd.Series, metric: str) -> str:
    return fmt_score_ci(cell_float(row.get(f"{SPLIT}.{metric}.mean")), cell_float(row.get(f"{SPLIT}.{metric}.ci95")))
