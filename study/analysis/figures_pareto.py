"""Accuracy against cost, one small panel per (accuracy, cost) pair, with the Pareto front marked."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.analysis.common import LAYOUT, value_axis
from study.analysis.loading import ACCURACY, COST, OBJECTIVE, SINGLE_TASK, Study
from study.analysis.pareto import pareto_front

FRONT_STYLE = {"color": "black", "width": 1.5, "dash": "dot"}


def pareto_figure(study: Study, notes: list[str]) -> go.Figure | None:
    """Rows: accuracy metrics; columns: costs. Finished trials are points (coloured by method),
    ASHA-stopped trials open points; the front (over finished trials) is a dotted staircase with ringed points.

    Single-task baselines are left out of the objective row: their objective is one task's score,
    not the multi-task mean, so it does not compare.
    """
    trials = study.trials[study.trials["status"].isin(["finished", "stopped"])]
    rows = [c for c in ACCURACY if trials[c].notna().any()]
    cols = [c for c in COST if trials[c].notna().any()]
    if not rows or not cols:
        notes.append("Pareto fronts: no finished trial has both an accuracy and a cost figure.")
        return None
    colors, hover = study.colors(), study.hover
    fig = make_subplots(rows=len(rows), cols=len(cols), shared_xaxes="columns", shared_yaxes="rows",
                        horizontal_spacing=0.02, vertical_spacing=0.03)
    shown: set[str] = set()
    for i, acc in enumerate(rows, start=1):
        part = trials[~trials["method"].isin(SINGLE_TASK)] if acc == OBJECTIVE else trials
        for j, cost in enumerate(cols, start=1):
            for method in study.methods():
                for status, symbol in (("finished", "circle"), ("stopped", "circle-open")):
                    pts = part[(part["method"] == method) & (part["status"] == status)]
                    pts = pts[pts[acc].notna() & pts[cost].notna()]
                    if pts.empty:
                        continue
                    name = method if status == "finished" else f"{method} (stopped)"
                    fig.add_trace(go.Scatter(
                        x=pts[cost], y=pts[acc], mode="markers", name=name, legendgroup=name,
                        showlegend=name not in shown, marker={"color": colors[method], "symbol": symbol,
                                                              "size": 8, "line": {"width": 1}},
                        text=[hover[t] for t in pts["trial_id"]], hoverinfo="text"), row=i, col=j)
                    shown.add(name)
            front = pareto_front(part[part["status"] == "finished"], cost, acc)
            if len(front):
                fig.add_trace(go.Scatter(
                    x=front[cost], y=front[acc], mode="lines+markers", line={**FRONT_STYLE, "shape": "hv"},
                    marker={"symbol": "circle-open", "size": 15, "color": "black", "line": {"width": 2}},
                    name="Pareto front", legendgroup="front", showlegend="front" not in shown,
                    text=[hover[t] for t in front["trial_id"]], hoverinfo="text"), row=i, col=j)
                shown.add("front")
            if i == len(rows):
                fig.update_xaxes(title_text=COST[cost], row=i, col=j)
            fig.update_xaxes(**value_axis(trials[cost]), row=i, col=j)
        fig.update_yaxes(title_text=ACCURACY[acc], rangemode="tozero", row=i, col=1)
    fig.update_layout(**LAYOUT, height=180 + 220 * len(rows), title="Accuracy against cost (validation, best epoch)")
    return fig
