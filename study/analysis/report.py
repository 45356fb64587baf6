"""Build the report of one study: every figure and table, then one HTML page."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from study.analysis.clinical import valves_section
from study.analysis.columns import TEST_METRICS
from study.analysis.common import cell_float, fmt_cost, fmt_score, fmt_score_ci, fmt_sig
from study.analysis.figures_branch import branch_figure
from study.analysis.figures_curves import balance_figure, learning_curves_figure
from study.analysis.figures_headline import headline_figure, heldout_figure
from study.analysis.figures_hparams import importance_figure, parallel_figure, slices_figure
from study.analysis.figures_pareto import pareto_figure
from study.analysis.headline import Headline, Heldout, headline, read_heldout
from study.analysis.html import Section, bullet_list, notes_box, render
from study.analysis.importance import param_importance, storage_importances
from study.analysis.loading import OBJECTIVE, SINGLE_TASK, Study
from study.analysis.markdown import chosen_frame
from study.analysis.summary import (
    best_trials_table,
    failed_table,
    headline_table,
    html_table,
    status_counts,
    takeaways,
)
from study.heldout.chosen import CHOSEN_FILE
from study.heldout.costs import COSTS
from study.heldout.informative import BUSY_FACTOR, RULE, busy_spreads
from study.heldout.tuning_gain import TUNING_GAIN_FILE
from study.heldout.verdict import VERDICT_FILE
from trainables.metrics.names import CLINICAL
from trainables.wording import counted


@dataclass
class Report:
    html: str
    figures: dict[str, go.Figure] = field(default_factory=dict)  # name -> figure, for static export
    notes: list[str] = field(default_factory=list)


def _importance_figures(study: Study, multi: pd.DataFrame, notes: list[str]) -> dict[str, go.Figure | None]:
    """Hyperparameter importances: within each multi-task method, straight from its own Optuna study in
    optuna.db (the searcher's exact distributions); across methods (``method`` itself a parameter) from
    trials.parquet when the study mixes methods, or when it has no optuna.db (studies from before it)."""
    stored = {m: imp for m, imp in storage_importances(study.path).items() if m not in SINGLE_TASK}
    figs: dict[str, go.Figure | None] = {}
    if not stored or multi["method"].nunique() > 1:
        figs["importance"] = importance_figure(param_importance(multi, study.method_params), notes)
    for method, imp in stored.items():
        key = "importance" if "importance" not in figs else f"importance-{method.replace('/', '-')}"
        figs[key] = importance_figure(imp, notes, scope=f"within {method}, from its Optuna study in optuna.db")
    return figs


def build_report(study: Study) -> Report:
    notes = list(study.notes)
    t = study.trials
    if t.empty:
        notes.append("trials.parquet holds no trials yet: the study has not finished a single epoch.")
    head = headline(t)
    notes += head.notes
    held = read_heldout(study.path, notes)
    figs: dict[str, go.Figure | None] = {}
    if held is not None:  # the headline is the held-out one; the validation comparison follows it
        figs["headline"] = heldout_figure(held, study.colors())
        figs["headline_val"] = headline_figure(study, head)
    else:
        figs["headline"] = headline_figure(study, head)
    figs["pareto"] = pareto_figure(study, notes)
    figs["branch"] = branch_figure(study, notes)
    figs["balance"] = balance_figure(study, notes)
    figs["curves"] = learning_curves_figure(study, notes)
    searched = len(t) > 0 and not t["is_repeat"].all()
    if searched:
        figs["parallel"] = parallel_figure(study, notes)
        figs["slices"] = slices_figure(study, notes)
        figs.update(_importance_figures(study, t[~t["method"].isin(SINGLE_TASK)], notes))
    elif len(t):  # --samples 0: every trial re-ran a default configuration; nothing was searched
        notes.append("No search (--samples 0): every trial re-ran a method's default configuration, so there are no "
                     "hyperparameter effects to show.")

    def blocks(*items: object) -> list:
        return [i for i in items if i is not None and i != ""]

    best = best_trials_table(study)
    failed = failed_table(study)
    valves = valves_section(held, _read_verdict(study)) if held is not None else None  # per valve, per view
    sections = [
        *_verdict_section(study),
        Section("summary", "Summary", _summary_text(study, held),
                blocks(bullet_list(takeaways(study, head, held), "takeaways"), notes_box(notes),
                       (f"<h3>{'Multi-task trials, fold by fold' if 'fold' in best else 'Best multi-task trials'}</h3>"
                        + html_table(best)) if len(best) else "")),
        _headline_section(held, head, figs, blocks, busy_spreads(study.costs())),
        *([valves] if valves is not None else []),
        *_tuning_section(study),
        Section("pareto", "Accuracy vs cost",
                "Costs that are counted (parameters, GFLOPs) or timed alone with repeats (costs.parquet); the "
                "seconds trials recorded while they shared the cores are not used. Top: every searched trial "
                "(open points: stopped early by ASHA), its validation objective; bottom: each method's chosen "
                "configurations, their held-out objective (mean ± 95% CI) against the median of their costs timed "
                "alone (bar: the range of those timings). Ringed points joined by the dotted staircase form the "
                "Pareto front (nothing else is as accurate and no costlier); costs within a timed cost's noise (the "
                "median max/min of the timings of the same work measured more than once) count as equal, so the "
                "front never steps through noise. Hover a point for its hyperparameters.", blocks(figs["pareto"])),
        *([Section("branch", "Where to branch",
                   "Shared-backbone trials by how many backbone units the two tasks share (model.shared_stages: 0 "
                   "trains two separate networks at dual's cost, the most is today's shared model): validation "
                   "accuracy, cost, and the cosine between the tasks' gradients on the shared units (none at 0). "
                   "Points are trials, the line their mean per split; step seconds are measured while trials ran "
                   "side by side.", blocks(figs["branch"]))] if figs["branch"] is not None else []),
        Section("balance", "Task weights and gradient interference",
                "How each balancer weighted detection and view per epoch, and the cosine between the two tasks' "
                "gradients on the last shared layer (negative: the tasks pull the trunk apart).",
                blocks(figs["balance"])),
        Section("curves", "Learning curves",
                "Training loss parts and validation metrics per epoch; pick one trial in the menu. Training losses "
                "do not compare across architectures; the validation metrics do.", blocks(figs["curves"])),
        *([Section("hparams", "Hyperparameter effects",
                   "Finished multi-task trials of the search (seed repeats and single-task baselines left out: a "
                   "baseline's objective is one task's score). Importance: how much each hyperparameter, and the "
                   "method itself, decides whether a trial reaches the top of the objective.",
                   blocks(figs["parallel"], figs["slices"],
                          *(f for k, f in figs.items() if k.startswith("importance"))))] if searched else []),
    ]
    if len(failed):
        sections.append(Section("failed", "Failed trials", "", [html_table(failed)]))
    sections.append(Section("provenance", "Provenance", "", [_provenance(study)]))
    meta = html.escape(f"{study.path} · space {_space(study)} · {counted(len(t), 'trial')} ({status_counts(t)}) · "
                       f"objective {OBJECTIVE}")
    page = render(f"Study {study.name}", meta, sections)
    return Report(page, {k: v for k, v in figs.items() if v is not None}, notes)


def _summary_text(study: Study, held: Heldout | None) -> str:
    """What the summary's numbers are: held-out first where the study has them, validation otherwise."""
    if held is not None:
        return ("The first take-away is held-out (the headline below: re-runs scored once on the test split); "
                "the others, and the table, are validation scores at each trial's best epoch (chosen on the same "
                "validation set, hence optimistic).")
    return ("Validation scores at each trial's best epoch (chosen on the same validation set, hence optimistic). "
            "For held-out numbers score a checkpoint on the test split: "
            f"<code>python -m study.evaluate --best {html.escape(str(study.path))} --split test</code>.")


VALIDATION_TEXT = (
    "Each method's best searched configuration. Where <code>--repeat-best</code> re-ran it with new "
    "seeds, mean ± 95% CI (Student t) over those repeats only: the original run was selected for its "
    "score, so including it would bias the mean upward. Δ% is relative to the single-task baselines "
    "(best det_only for detection mAP, best cls_only for view accuracy); Δm% is their mean over the "
    "two tasks (Maninis et al. 2019). Costs in brackets: ratio to the best dual configuration.")


def _read_verdict(study: Study) -> pd.DataFrame | None:
    path = study.path / VERDICT_FILE
    return pd.read_parquet(path) if path.is_file() else None


def _headline_section(held: Heldout | None, head: Headline, figs: dict[str, go.Figure | None],
                      blocks: Callable[..., list], busy: dict[str, dict[str, tuple[float, float]]]) -> Section:
    """The held-out headline (headline.parquet) when the study has one, else the validation comparison;
    either way the text says which split the numbers come from."""
    validation = [html_table(headline_table(head)) if head.results else "", figs.get("headline_val")
                  or (figs["headline"] if held is None else None)]
    if held is None:
        return Section("headline", "Headline comparison",
                       "Numbers from the <b>validation split</b> (the split trials were selected on, hence "
                       "optimistic; no held-out headline: run the study with <code>--repeat-best K --seeds N "
                       "--test</code>). " + VALIDATION_TEXT, blocks(*validation))
    corrected = ("Nadeau–Bengio corrected for the folds' overlapping training sets" if
                 held.table.get("interval_correction", pd.Series(dtype=str)).eq("nadeau-bengio").any() else
                 "<b>not corrected</b> for the folds' overlapping training sets (too narrow: rebuild it with "
                 "<code>python -m study.verdict</code>)")
    interval = ("mean over the outer folds of each fold's mean over seeds, ± 95% CI (Student t) over the folds, "
                f"{corrected}: the interval counts which patients were held out" if held.folds else
                "mean ± 95% CI (Student t) over those re-runs: <b>the interval covers seeds only, on one split</b> "
                "(which patients are held out moves the scores more; <code>--folds K</code> counts it)")
    text = (f"Numbers from <b>{html.escape(held.where())}</b>, read from <code>headline.parquet</code>. Each "
            "method's chosen configurations (its K best searched trials by best-epoch validation objective, or its "
            "default configuration without a search) were re-trained with new seeds, and each re-run's best-epoch "
            f"checkpoint was scored once on the held-out patients: {interval}. Costs: the method's chosen "
            "configuration timed alone on a worker Ray kept free of other trials (ratio to dual in brackets, the "
            "verdict's ratio); other programs on the machine still slow it, so where one configuration's repeated "
            f"timings differ by more than ×{BUSY_FACTOR:g} the cell says <i>busy machine</i> and gives their range. "
            "Trials' own wall seconds are in trials.parquet.")
    leak = ("<p class='notes'><b>Warning: the test split shares patients with the training or validation split</b> "
            "(the dataset's own folders): these scores measure memory as much as generalisation; use "
            "<code>--split patient</code>.</p>" if held.leaks else "")
    validation = blocks(*validation)
    below = ("<h3>Validation split (selection; optimistic)</h3>" + (
        "<p>Each fold validates on its own development patients: per method, the mean over every fold's re-runs "
        "of its chosen configuration.</p>" if held.folds else "")) if validation else ""
    text += " Below it, the validation numbers the search selected on." if validation else ""
    return Section("headline", "Headline comparison (held-out)", text,
                   blocks(leak, html_table(_heldout_table(held, busy)), figs["headline"], below, *validation))


def _verdict_section(study: Study) -> list[Section]:
    """The verdict (verdict.parquet, study/heldout/verdict.py) first: one row per pair of methods, one cell
    per metric."""
    path = study.path / VERDICT_FILE
    if not path.is_file():
        return []
    table = pd.read_parquet(path)
    if table.empty:
        return []
    rows = _pair_rows(table)
    unit = table["unit"].iloc[0]
    how = ("Pairs are the outer patient folds: in each fold both methods were trained and selected without that "
           "fold's patients and scored on them; seeds are averaged within a fold first, so the interval counts "
           "which patients were held out." if unit == "fold" else
           "Pairs are the seeds of <b>one split</b>: the interval covers training randomness only, not which "
           "patients were held out; run the study with <code>--folds K</code> for a verdict on patients.")
    first = table.iloc[0]
    corrected = (f" The interval is widened for the folds' overlapping training sets (Nadeau–Bengio's corrected "
                 f"resampled t: variance × (1/K + n_test/n_train), n_test/n_train = "
                 f"{cell_float(first.get('test_train_ratio')):.3f} in patients)." if first.get("correction") ==
                 "nadeau-bengio" else " <b>This file's intervals are not corrected</b> for the folds' overlapping "
                 "training sets: rebuild it with <code>python -m study.verdict</code>." if unit == "fold" else "")
    mixed = first.get("mixed_numerics") or ""
    corrected += (f" <b>Warning: the re-runs computed at different precisions or memory formats ({html.escape(mixed)})"
                  "</b>: these differences compare numerics as well as methods." if mixed else "")
    text = ("Every pair of methods compared on the same held-out patients: the mean difference a − b of each "
            "test score with its two-sided 95% Student-t interval, and each cost as the geometric mean of the "
            f"ratio a / b with its interval; a and b are each method's own value over the pairs (for a cost its "
            f"geometric mean, so a / b is the ratio). {how}{corrected} How an interval is read: <i>better</i> when "
            "it excludes no difference; <i>equivalent within the margin</i> when all of it lies inside the "
            "metric's margin (two one-sided tests; <code>--margin</code>); <i>not resolved</i> when it contains "
            "no difference but reaches past the margin — <b>not</b> evidence that the methods are equal; "
            f"{html.escape(RULE)}. The last column reads the same intervals at a family-wise 5% (Holm's "
            "adjustment over the comparisons of its family: primary scores, secondary scores, costs; the jet "
            "scores, a family of their own, are in the section on valves). Read "
            "verdict.parquet for the numbers.")
    return [Section("verdict", "Verdict (paired, held-out)", text, [html_table(pd.DataFrame(rows))])]


def _tuning_section(study: Study) -> list[Section]:
    """What tuning did (``python -m study.tuned``: tuning_gain.parquet, each method searched against its default,
    paired by fold) and what each fold's search chose (chosen_configs.parquet); nothing where neither is there."""
    blocks = []
    if (study.path / TUNING_GAIN_FILE).is_file():
        blocks.append(html_table(pd.DataFrame(_pair_rows(pd.read_parquet(study.path / TUNING_GAIN_FILE)))))
    if (study.path / CHOSEN_FILE).is_file():
        blocks.append("<h3>What each fold's search chose</h3>" + html_table(chosen_frame(study.path)))
    if not blocks:
        return []
    text = ("Did tuning help? Each method's searched configuration against its default configuration, paired by "
            "outer fold over the same patients (a − b = searched − default; the verdict's intervals, margins and "
            "words), and the configuration each fold's search chose, with its place in the search range (0 = low "
            "end, 1 = high end, on the range's own scale): a value at an edge says the range cut the search short. "
            "Written by <code>python -m study.tuned SEARCHED DEFAULT</code>.")
    return [Section("tuning", "Tuning: searched against default", text, blocks)]


def _pair_rows(table: pd.DataFrame) -> list[dict[str, object]]:
    """verdict.parquet (or tuning_gain.parquet, of its columns) as the report's long table: one row per pair and
    metric (the jet scores left to the section on valves)."""
    rows = []
    for _, r in table.iterrows():  # one row per pair and metric: a long table reads down, not sideways
        if r.get("family") == CLINICAL:  # jet present per valve: in the section on valves (study/analysis/clinical.py)
            continue
        a, b = (cell_float(r.get(k)) for k in ("mean_a", "mean_b"))  # absent in files from before them
        if r["kind"] == "ratio":
            low, high = cell_float(r["ci_low"]), cell_float(r["ci_high"])
            estimate = "×" + fmt_sig(cell_float(r["diff_mean"])) + (
                f" [{fmt_sig(low)}, {fmt_sig(high)}]" if math.isfinite(low) else "")
            label, own = f"{COSTS.get(r['metric'], r['metric'])}, ratio a / b", (fmt_sig(a), fmt_sig(b))
        else:
            half = cell_float(r["diff_ci95"])
            estimate = fmt_score(cell_float(r["diff_mean"]), signed=True) + (
                f" ± {fmt_score(half)}" if math.isfinite(half) else "")
            label, own = f"test {TEST_METRICS.get(r['metric'], r['metric'])}, a − b", (fmt_score(a), fmt_score(b))
        said, holm_said = (_named(r.get(k) or r["conclusion"], r) for k in ("conclusion", "conclusion_holm"))
        reason = r.get("reason") if isinstance(r.get("reason"), str) else ""
        exact = cell_float(r["diff_ci95"]) == 0  # the same count in every pair: not a test, not counted
        p_value = math.nan if exact else cell_float(r.get("p_value"))
        rows.append({"method a": r["method_a"], "method b": r["method_b"], "metric": label, "a": own[0],
                     "b": own[1], "estimate (95% CI)": estimate, "pairs": int(r["n_pairs"]),
                     "margin": _margin(r), "p": f"{p_value:.3f}" if math.isfinite(p_value) else "—",
                     "verdict": f"{said} ({reason})" if reason else said,
                     "after Holm": f"{holm_said} (exact: not a test)" if exact else
                     f"{holm_said} ({r.get('family') or 'family'}: {_count(r)})"})
    return rows


def _named(conclusion: str, row: pd.Series) -> str:
    """A conclusion with the methods' names (a file from before the margins said "no difference at 95%")."""
    return (str(conclusion).replace("method_a", row["method_a"]).replace("method_b", row["method_b"])
            .replace("no difference at 95%", "not resolved"))


def _margin(row: pd.Series) -> str:
    value = cell_float(row.get("margin"))
    if not math.isfinite(value):
        return "—"
    return f"×{value:.2f}" if row["kind"] == "ratio" else f"±{value:g}"


def _count(row: pd.Series) -> str:
    n = row.get("n_comparisons")
    return counted(int(n), "comparison") if n is not None and not pd.isna(n) else "not counted"


def _heldout_table(held: Heldout, busy: dict[str, dict[str, tuple[float, float]]]) -> pd.DataFrame:
    """One row per method: test scores (three decimals) and costs (significant figures, unit in the column, the
    ratio to dual in brackets); a cost whose repeated measurements disagree by more than BUSY_FACTOR says so."""
    rows = []
    for _, r in held.table.iterrows():
        runs = r.get("n_runs", r["n_seeds"])  # headline.parquet from before n_runs counted re-runs as n_seeds
        row = {"method": r["method"], **({"folds": int(r["n_folds"])} if held.folds else {}),
               "re-runs": int(runs), "configs": int(r.get("n_configs", 0) or 0)}
        failed = cell_float(r.get("n_failed"))  # divergence is a result about a method: shown beside its scores
        row["failed re-runs"] = int(failed) if math.isfinite(failed) else "—"
        for m, label in TEST_METRICS.items():
            mean, half = cell_float(r.get(f"test.{m}.mean")), cell_float(r.get(f"test.{m}.ci95"))
            row[f"test {label}"] = fmt_score_ci(mean, half)
        for c, label in COSTS.items():
            ratio = cell_float(r.get(f"{c}.ratio_dual"))
            row[label] = fmt_cost(c, cell_float(r.get(c))) + (f" (×{fmt_sig(ratio)})" if math.isfinite(ratio) else "")
            spread = busy.get(str(r["method"]), {}).get(c)
            if spread:
                row[label] += f" busy machine: {fmt_sig(spread[0])}–{fmt_sig(spread[1])} across folds"
        rows.append(row)
    return pd.DataFrame(rows)


def _space(study: Study) -> str:
    spaces = study.trials["space"].dropna().unique() if "space" in study.trials else []
    return ", ".join(map(str, spaces)) or str(study.manifest.get("space", "?"))


def _provenance(study: Study) -> str:
    """The manifest's essentials: when, what command, which code, data and package versions."""
    m = study.manifest
    if not m:
        return "<p>No manifest.json in the study folder.</p>"
    base = m.get("base_config", {}) if isinstance(m.get("base_config"), dict) else {}
    rows = {
        "created / updated": f"{m.get('created', '?')} / {m.get('updated', '?')}",
        "command": " ".join(map(str, m.get("command", []))) if isinstance(m.get("command"), list) else m.get("command"),
        "git commit": m.get("git_commit"),
        "data": ", ".join(f"{k}={base[k]}" for k in ("data.source", "data.imgsz", "data.split", "train.epochs")
                          if k in base),
        "dataset fingerprint": m.get("dataset_fingerprint"),
        "seeds": _compact(m.get("seeds")),
        "versions": _compact(m.get("versions")),
    }
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in rows.items() if v not in (None, ""))
    return f'<table class="prov"><tbody>{body}</tbody></table>'  # text, left-aligned, long values wrap


def _compact(v: object) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return "" if v is None else str(v)
