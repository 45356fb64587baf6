"""The headline comparison as small multiples: one panel per metric, one point (± 95% CI) per method.

``headline_figure``: validation scores of the trials (the search's view); ``heldout_figure``: the
held-out headline (headline.parquet: test-split scores of the re-runs, costs measured alone)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.analysis.columns import TEST_METRICS
from study.analysis.common import LAYOUT, fmt, fmt_ci, fmt_cost
from study.analysis.headline import REFERENCE, Headline, Heldout
from study.analysis.loading import ACCURACY, COST, OBJECTIVE, SINGLE_TASK, Study
from study.heldout.costs import COSTS
from trainables.wording import counted

COLUMNS = 5
SCORE_RANGE = (0.0, 1.0)  # what mAP, accuracy, F1 and the objective (their mean) can be


def headline_figure(study: Study, head: Headline) -> go.Figure | None:
    """Accuracy panels, a Δm% panel and cost panels; per method its mean with the CI as an error bar
    and, behind it, the individual seeds as small grey points. Methods keep one order in every panel;
    single-task baselines are left out of the objective panel (their objective is one task's score). None for
    fewer than two methods: panels of one point each compare nothing, and the table above says it better."""
    if len(head.results) < 2:
        return None
    colors = study.colors()
    panels = [(c, label) for c, label in ACCURACY.items() if any(_finite(r.stats[c].mean) for r in head.results)]
    show_dm = any(_finite(r.delta.get("m", math.nan)) for r in head.results)
    if show_dm:
        panels.append(("Δm", "Δm% vs single-task"))
    panels += [(c, label) for c, label in COST.items() if any(_finite(r.stats[c].mean) for r in head.results)]
    rows = math.ceil(len(panels) / COLUMNS)
    order = [r.method for r in head.results]
    fig = make_subplots(rows=rows, cols=COLUMNS, subplot_titles=[label for _, label in panels],
                        horizontal_spacing=0.06, vertical_spacing=0.22 if rows > 1 else 0.1)
    for k, (col, _) in enumerate(panels):
        r, c = k // COLUMNS + 1, k % COLUMNS + 1
        for res in head.results:
            if col == OBJECTIVE and res.method in SINGLE_TASK:
                continue
            if col == "Δm":
                mean, half, seeds = res.delta.get("m", math.nan), math.nan, []
                hover = f"{res.method}: Δm = {fmt(mean)}%"
            else:
                s = res.stats[col]
                mean, half, seeds = s.mean, s.half_width, res.values[col]
                hover = f"{res.method}: {fmt_ci(mean, half)} (n={s.n}, {res.seeds}, trial {res.trial_id})"
                hover += _clipped_note(mean, half, col in ACCURACY)
                ratio = res.cost_ratio.get(col, math.nan)
                if _finite(ratio):
                    hover += f"<br>{fmt(ratio, 3)}× {REFERENCE}"
            if not _finite(mean):
                continue
            if len(seeds) > 1:
                fig.add_trace(go.Scatter(x=[res.method] * len(seeds), y=seeds, mode="markers", showlegend=False,
                                         marker={"color": "rgba(120,120,120,0.5)", "size": 5}, hoverinfo="skip"),
                              row=r, col=c)
            fig.add_trace(go.Scatter(
                x=[res.method], y=[mean], mode="markers", name=res.method, legendgroup=res.method,
                showlegend=k == 0, marker={"color": colors[res.method], "size": 11, "symbol": "diamond"},
                error_y=error_bar(mean, half, bounded=col in ACCURACY),
                text=[hover], hoverinfo="text"), row=r, col=c)
        if col != "Δm":
            fig.update_yaxes(rangemode="tozero", row=r, col=c)  # scores and costs are never negative
        if col == "Δm":
            fig.add_hline(y=0, line={"color": "grey", "width": 1}, row=r, col=c)
        fig.update_xaxes(tickangle=-40, categoryorder="array", categoryarray=order, row=r, col=c)
    fig.update_layout(**{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 90}}, height=150 + 330 * rows,
                      showlegend=False,
                      title="Best configuration per method (mean ± 95% CI over seed repeats where they exist)")
    return fig


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def error_bar(mean: float, half: float, bounded: bool) -> dict:
    """Plotly ``error_y`` for mean ± half. ``bounded``: a score that lives in ``SCORE_RANGE`` (mAP, accuracy,
    F1, the objective, their means), whose bar is drawn only within that range (asymmetric: a Student t
    interval of a few seeds near 1 runs past 1, where no score can be); costs are drawn whole. The hover
    keeps the true interval (``_clipped_note`` says when the bar is cut)."""
    bar = {"type": "data", "symmetric": False, "thickness": 1.5, "width": 6}
    if not _finite(half):
        return {**bar, "array": [0.0], "arrayminus": [0.0], "visible": False}
    lo, hi = (max(mean - half, SCORE_RANGE[0]), min(mean + half, SCORE_RANGE[1])) if bounded else \
        (mean - half, mean + half)
    return {**bar, "array": [max(hi - mean, 0.0)], "arrayminus": [max(mean - lo, 0.0)], "visible": True}


def _clipped_note(mean: float, half: float, bounded: bool) -> str:
    """The hover's line for a bar ``error_bar`` cut at the score's range ("" when nothing was cut)."""
    if not (bounded and _finite(mean) and _finite(half)) or SCORE_RANGE[0] <= mean - half <= mean + half <= \
            SCORE_RANGE[1]:
        return ""
    return f"<br>bar drawn within [{SCORE_RANGE[0]:g}, {SCORE_RANGE[1]:g}]; the interval above reaches past it"


def heldout_figure(head: Heldout, colors: dict[str, str]) -> go.Figure | None:
    """The held-out headline: one panel per test metric (mean ± 95% CI over the re-runs, each re-run a
    small grey point) and one per isolated cost (hover: the ratio to dual)."""
    t = head.table
    if t.empty:
        return None
    panels = [(f"test.{m}", label, True) for m, label in TEST_METRICS.items()
              if f"test.{m}.mean" in t and t[f"test.{m}.mean"].notna().any()]
    panels += [(c, label, False) for c, label in COSTS.items() if c in t and t[c].notna().any()]
    if not panels:
        return None
    rows = math.ceil(len(panels) / COLUMNS)
    order = head.methods()
    fig = make_subplots(rows=rows, cols=COLUMNS, subplot_titles=[label for _, label, _ in panels],
                        horizontal_spacing=0.06, vertical_spacing=0.22 if rows > 1 else 0.1)
    for k, (col, _, is_score) in enumerate(panels):
        r, c = k // COLUMNS + 1, k % COLUMNS + 1
        for _, res in t.iterrows():
            method = str(res["method"])
            if is_score:
                mean, half = res[f"{col}.mean"], res[f"{col}.ci95"]
                seeds = [float(v) for v in head.runs.loc[head.runs["method"] == method, col]] \
                    if col in head.runs and "method" in head.runs else []
                hover = f"{method}: {fmt_ci(mean, half)} (n={counted(int(res['n_seeds']), 're-run')} on the test split)"
                hover += _clipped_note(mean, half, True)
            else:
                mean, half, seeds = res[col], math.nan, []
                ratio = res.get(f"{col}.ratio_dual", math.nan)
                hover = f"{method}: {fmt_cost(col, mean)} measured alone" + (f"<br>{fmt(ratio, 3)}× {REFERENCE}"
                                                                   if _finite(ratio) else "")
            if not _finite(mean):
                continue
            if len(seeds) > 1:
                fig.add_trace(go.Scatter(x=[method] * len(seeds), y=seeds, mode="markers", showlegend=False,
                                         marker={"color": "rgba(120,120,120,0.5)", "size": 5}, hoverinfo="skip"),
                              row=r, col=c)
            fig.add_trace(go.Scatter(
                x=[method], y=[mean], mode="markers", name=method, showlegend=False,
                marker={"color": colors.get(method, "#444"), "size": 11, "symbol": "diamond"},
                error_y=error_bar(mean, half, bounded=is_score),
                text=[hover], hoverinfo="text"), row=r, col=c)
        fig.update_yaxes(rangemode="tozero", row=r, col=c)
        fig.update_xaxes(tickangle=-40, categoryorder="array", categoryarray=order, row=r, col=c)
    fig.update_layout(**{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 90}}, height=150 + 330 * rows,
                      showlegend=False, title=f"Held-out {head.table['split'].iloc[0]} split (split by "
                      f"{head.split_by}): mean ± 95% CI over re-runs; costs measured alone")
    return fig
