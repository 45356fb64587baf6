"""The report's text: take-away sentences and the tables (best trials, headline, failures) as HTML."""

from __future__ import annotations

import html
import math

import pandas as pd

from study.analysis.columns import TEST_METRICS
from study.analysis.common import cell_float, fmt, fmt_cost_ci, fmt_count, fmt_score, fmt_score_ci, fmt_sig
from study.analysis.headline import REFERENCE, Headline, Heldout, MethodResult, is_folded
from study.analysis.loading import ACCURACY, COST, OBJECTIVE, SINGLE_TASK, Study
from study.analysis.pareto import pareto_front
from study.heldout.verdict import VERDICT_FILE, verdict_lines
from trainables.wording import counted

FAILED = ("error", "oom", "diverged")
TOP_N = 10


def status_counts(trials: pd.DataFrame) -> str:
    counts = trials["status"].value_counts()
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"


def _score(r: MethodResult) -> str:
    parts = [f"objective {fmt_score_ci(r.stats[OBJECTIVE].mean, r.stats[OBJECTIVE].half_width)}"]
    for col, label in (("best.val.map", "mAP"), ("best.val.view_accuracy", "view acc.")):
        if math.isfinite(r.stats[col].mean):
            parts.append(f"{label} {fmt_score_ci(r.stats[col].mean, r.stats[col].half_width)}")
    n = r.stats[OBJECTIVE].n
    parts.append(f"n={n} seed repeats" if r.seeds == "repeats" else "one run")
    return ", ".join(parts)


def heldout_takeaway(held: Heldout) -> str | None:
    """One sentence with each method's held-out scores (mean ± 95% CI over its re-runs), or None when
    no method has a scored re-run."""
    parts = []
    for _, r in held.table.iterrows():
        scores = []
        for m, label in TEST_METRICS.items():
            mean, half = cell_float(r.get(f"test.{m}.mean")), cell_float(r.get(f"test.{m}.ci95"))
            if math.isfinite(mean):
                scores.append(f"{label} {fmt_score_ci(mean, half)}")
        # n: the interval's unit, folds (--folds) or re-runs (n_runs; n_seeds in files from before n_runs)
        n = cell_float(r.get("n_folds") if held.folds else r.get("n_runs", r.get("n_seeds")))
        if scores:
            runs = int(n) if math.isfinite(n) else 0
            parts.append(f"{r['method']} {', '.join(scores)} (n={counted(runs, 'fold' if held.folds else 're-run')})")
    if not parts:
        return None
    return f"Held-out, on {held.where()}: " + "; ".join(parts) + "."


def read_verdict(study: Study) -> pd.DataFrame:
    """verdict.parquet (study/heldout/verdict.py), or an empty table: what the verdict section shows."""
    path = study.path / VERDICT_FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["method_a", "method_b"])


def verdict_takeaways(verdict: pd.DataFrame) -> list[str]:
    """One sentence per pair of methods, the console's verdict line (verdict.py: ``verdict_lines``) from the
    same file the verdict table shows, so the summary cannot say otherwise."""
    if verdict.empty:
        return []
    unit = "patients never seen, paired by outer fold" if verdict["unit"].iloc[0] == "fold" else \
        "one held-out split, paired by seed"
    return [f"Verdict ({unit}): {line.strip()}." for line in verdict_lines(verdict)]


def takeaways(study: Study, head: Headline, held: Heldout | None = None) -> list[str]:
    """Plain sentences (HTML-escaped) with the numbers a reader should leave with. With a held-out
    headline its scores come first, then the verdict's pairs, and the sentences after them say that theirs
    are validation scores. A folds study ranks no trial across folds (each fold validates on its own patients)."""
    t = study.trials
    out = []
    first = heldout_takeaway(held) if held is not None else None
    if first:
        out.append(first)
    verdict = read_verdict(study)
    out += verdict_takeaways(verdict)
    judged = set(zip(verdict["method_a"], verdict["method_b"], strict=True))
    val = "On the validation split (selection; optimistic): " if first else ""
    ok = t[(t["status"] == "finished") & t[OBJECTIVE].notna()]
    multi = ok[~ok["method"].isin(SINGLE_TASK)]
    if ok.empty:
        out.append(f"No trial finished with a validation score ({status_counts(t)}); see the failures below.")
        return [html.escape(s) for s in out]
    if multi.empty:
        out.append("Only single-task baselines finished: there is no multi-task result to compare yet.")
    elif is_folded(t):
        out.append("Each fold's trials were validated on that fold's own development patients: their validation "
                   "scores do not rank across folds, so no best trial is named; the verdict above compares methods.")
    else:
        scores = multi[OBJECTIVE].astype(float)
        best = multi.loc[scores.idxmax()]
        ties = int((scores == scores.max()).sum()) - 1
        out.append(f"{val}Best multi-task trial: {best['trial_id']} ({best['method']}), objective "
                   f"{fmt_score(best[OBJECTIVE])} (mAP@0.5:0.95 {fmt_score(best['best.val.map'])}, view accuracy "
                   f"{fmt_score(best['best.val.view_accuracy'])}), {fmt_sig(best['time.train_s'])} s of training"
                   + (f"; tied with {ties} other trial{'s' if ties > 1 else ''}." if ties else "."))
    gn, dual = head.get("shared/gradnorm"), head.get(REFERENCE)
    judged_pair = ("shared/gradnorm", REFERENCE) in judged  # then the verdict's sentence above says it
    if gn and dual and not judged_pair:
        d = gn.stats[OBJECTIVE].mean - dual.stats[OBJECTIVE].mean
        ratios = ", ".join(f"{fmt_sig(gn.cost_ratio[c])}× the {label.split(' (')[0]}" for c, label in COST.items()
                           if math.isfinite(gn.cost_ratio.get(c, math.nan)))
        verdict = _overlap(gn, dual)
        out.append(f"{val}GradNorm (shared) vs dual backbones: {_score(gn)} against {_score(dual)}; "
                   f"difference {d:+.3f} in the objective{verdict}. GradNorm costs {ratios or 'n/a'} of dual.")
    elif not judged_pair and {"shared/gradnorm", REFERENCE} <= set(t["method"]):  # both ran, one has no result
        missing = [m for m, r in (("shared/gradnorm", gn), ("dual", dual)) if r is None]
        out.append(f"No finished {' or '.join(missing)} trial: the GradNorm-vs-dual comparison is not available.")
    deltas = [(r.method, r.delta["m"]) for r in head.results if math.isfinite(r.delta.get("m", math.nan))]
    if deltas:
        out.append("Δm% against the single-task baselines (positive = the multi-task model beats training each task "
                   "alone): " + ", ".join(f"{m} {v:+.1f}%" for m, v in deltas) + ".")
    front = pareto_front(multi, "time.train_s", OBJECTIVE) if multi["time.train_s"].notna().any() else multi[:0]
    if len(front):
        methods = list(dict.fromkeys(front["method"]))
        out.append(f"Objective vs train-time Pareto front: {len(front)} trial{'s' if len(front) > 1 else ''} from "
                   f"{', '.join(methods)}.")
    failed = t[t["status"].isin(FAILED)]
    if len(failed):
        out.append(f"{len(failed)} of {counted(len(t), 'trial')} failed ({status_counts(failed)}); "
                   "see the failed trials table.")
    return [html.escape(s) for s in out]


def _overlap(a: MethodResult, b: MethodResult) -> str:
    sa, sb = a.stats[OBJECTIVE], b.stats[OBJECTIVE]
    single = [r.method for r, st in ((a, sa), (b, sb)) if not math.isfinite(st.half_width)]
    if len(single) == 2:
        return " (no confidence intervals: one run each)"
    if single:
        return f" ({single[0]} is one run: no interval to compare with)"
    if sa.low > sb.high or sb.low > sa.high:
        return " (the 95% CIs do not overlap)"
    return " (the 95% CIs overlap: not a clear difference)"


TEXT_COLUMNS = {"trial", "method", "status", "hyperparameters", "reason", "method a", "method b", "metric", "verdict"}


def html_table(df: pd.DataFrame, cls: str = "") -> str:
    """An HTML table; the TEXT_COLUMNS are left-aligned (class "t"), numbers right-aligned."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    text = [c in TEXT_COLUMNS for c in df.columns]
    rows = []
    for row in df.itertuples(index=False):
        cells = (f'<td{" class=t" if t else ""}>{html.escape(v if isinstance(v, str) else fmt(v))}</td>'
                 for v, t in zip(row, text, strict=True))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'  # a wide table scrolls by itself, not the page


def best_trials_table(study: Study, n: int = TOP_N) -> pd.DataFrame:
    """The top multi-task trials by objective (a single-task objective is one task's score: not comparable); in a
    folds study the top ``n`` of each fold, fold by fold (validation scores do not rank across folds)."""
    t = study.trials
    ok = t[t["status"].isin(["finished", "stopped"]) & t[OBJECTIVE].notna() & ~t["method"].isin(SINGLE_TASK)]
    folded = is_folded(t)  # each fold validates on its own patients: trials rank within a fold only
    ok = (ok.sort_values(["fold", OBJECTIVE], ascending=[True, False]).groupby("fold").head(n) if folded
          else ok.sort_values(OBJECTIVE, ascending=False).head(n))
    rows = []
    for rank, (_, r) in enumerate(ok.iterrows(), start=1):
        keys = study.method_params.get(r["method"], [])
        row = {**({"fold": int(r["fold"])} if folded else {"#": rank}), "trial": r["trial_id"], "method": r["method"],
               "status": r["status"]}
        row.update({label: fmt_score(cell_float(r[c])) for c, label in ACCURACY.items()})
        row.update({"epochs": r["epochs_run"], "train s": r["time.train_s"], "GFLOPs": r["eff.gflops"],
                    "params": fmt_count(cell_float(r["eff.params_total"]))})
        row["hyperparameters"] = ", ".join(f"{k}={fmt(r[k])}" for k in keys)
        if r["repeat_of"]:
            row["hyperparameters"] = f"seed repeat of {r['repeat_of']}"
        rows.append(row)
    return pd.DataFrame(rows)


def headline_table(head: Headline) -> pd.DataFrame:
    rows = []
    for r in head.results:
        row = {"method": r.method, "trial": r.trial_id, "seeds": f"{r.stats[OBJECTIVE].n} ({r.seeds})"}
        for c, label in ACCURACY.items():
            row[label] = fmt_score_ci(r.stats[c].mean, r.stats[c].half_width)
        for k, label in (("det", "Δdet %"), ("view", "Δview %"), ("m", "Δm %")):
            row[label] = _delta_cell(r, k)
        for c, label in COST.items():
            ratio = r.cost_ratio.get(c, math.nan)
            row[label] = fmt_cost_ci(c, r.stats[c].mean, r.stats[c].half_width) + (
                f" (×{fmt_sig(ratio)})" if math.isfinite(ratio) else "")
        rows.append(row)
    return pd.DataFrame(rows)


def _delta_cell(r: MethodResult, task: str) -> str:
    """Δ% against the single-task baseline; a baseline's own task reads "baseline"."""
    if r.method in SINGLE_TASK:
        own = "det" if r.method == "det_only" else "view"
        if task == own:
            return "baseline"
        if task == "m":
            return "—"  # Δm is a multi-task model's figure
    v = r.delta.get(task, math.nan)
    return f"{v:+.1f}" if math.isfinite(v) else "—"


def failed_table(study: Study) -> pd.DataFrame:
    t = study.trials[study.trials["status"].isin(FAILED)]
    return pd.DataFrame({"trial": t["trial_id"], "method": t["method"], "status": t["status"],
                         "epochs run": t["epochs_run"], "reason": t["error"].str.slice(0, 300)})
