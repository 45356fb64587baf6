"""Accuracy against cost: the searched trials and the chosen configurations, with the front that noise allows.

Columns are the costs of study/analysis/frontier.py (counted, or timed alone with repeats: never the seconds
trials recorded side by side); rows are what accuracy means for the points in them:

1. every searched multi-task trial (finished: filled; stopped by ASHA: open), its validation objective at its
   best epoch. In a ``--folds`` study each fold validated on its own patients, so each fold has its own front;
2. each method's chosen configurations, their held-out objective (mean ± 95% CI over the outer folds, as the
   headline pools it) against the median of their costs measured alone (bar: the range of those measurements).

Fronts (study/analysis/pareto.py) count costs within their measurement noise as equal, so a front never steps
through noise; a timed cost nothing was measured twice for has no front (its noise is unknown).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.analysis.common import LAYOUT, fmt_cost, fmt_score, value_axis
from study.analysis.frontier import FRONTIER_COSTS, TIMED, Noise, chosen_points, cost_noise, trial_points
from study.analysis.headline import read_heldout
from study.analysis.loading import Study
from study.analysis.pareto import pareto_front

FRONT_STYLE = {"color": "black", "width": 1.5, "dash": "dot"}
ROWS = {"trials": "searched trials:<br>validation objective", "chosen": "chosen configurations:<br>held-out objective"}


def pareto_figure(study: Study, notes: list[str]) -> go.Figure | None:
    """Rows: searched trials (validation) and chosen configurations (held-out), where the study has them;
    columns: the frontier's costs that any point has. None (with a note) when no point has both."""
    costs = study.costs()
    held = read_heldout(study.path)
    ratio = float(held.table["test_train_ratio"].iloc[0]) if held is not None and "test_train_ratio" in \
        held.table and held.folds else 0.0
    parts = {"trials": trial_points(study.trials, costs),
             "chosen": chosen_points(held.runs, costs, ratio) if held is not None else pd.DataFrame()}
    parts = {k: v for k, v in parts.items() if len(v)}
    cols = [c for c in FRONTIER_COSTS if any(c in p and p[c].notna().any() for p in parts.values())]
    rows = [k for k, p in parts.items() if any(p[c].notna().any() for c in cols)]
    if not rows or not cols:
        notes.append("Accuracy vs cost: no searched trial or chosen configuration has both an accuracy and a cost "
                     "that is counted or timed alone.")
        return None
    noise = {c: cost_noise(costs, c) for c in cols}
    for c in cols:
        if not noise[c].known:
            notes.append(f"Accuracy vs cost: no front through {FRONTIER_COSTS[c]}: nothing in costs.parquet "
                         "measured the same work twice, so how far its timings wander is unknown.")
    fig = make_subplots(rows=len(rows), cols=len(cols), shared_yaxes="rows", horizontal_spacing=0.03,
                        vertical_spacing=0.12, column_titles=[f"{FRONTIER_COSTS[c]}<br><sub>{noise[c].describe()}"
                                                              f"</sub>" for c in cols])
    colors, shown = study.colors(), set()
    for i, row in enumerate(rows, start=1):
        points = parts[row]
        for j, cost in enumerate(cols, start=1):
            pts = points[points[cost].notna()]
            draw = _trials if row == "trials" else _chosen
            for trace in draw(pts, cost, colors, study.hover):
                trace.showlegend = trace.name not in shown
                shown.add(trace.name)
                fig.add_trace(trace, row=i, col=j)
            for trace in _fronts(pts, cost, noise[cost], row, study.hover):
                trace.showlegend = trace.name not in shown
                shown.add(trace.name)
                fig.add_trace(trace, row=i, col=j)
            fig.update_xaxes(**_axis(points, cost), row=i, col=j)
        fig.update_yaxes(title_text=ROWS[row], row=i, col=1)
    fig.update_layout(**{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 110}}, height=230 + 300 * len(rows),
                      title="Accuracy against cost: counted, or timed alone (fronts merge costs within their noise)")
    return fig


def _axis(points: pd.DataFrame, cost: str) -> dict:
    """A timed cost on a log axis (its noise is a factor, so equal noise spans equal widths; the range bars fit);
    a counted one log only when it spans more than 20×."""
    if cost not in TIMED:
        return value_axis(points[cost])
    spans = [points[c] for c in (cost, f"{cost}.low", f"{cost}.high") if c in points]
    return value_axis(pd.concat(spans), ratio=1.0)


def _trials(pts: pd.DataFrame, cost: str, colors: dict[str, str], hover: dict[str, str]) -> list[go.Scatter]:
    """One trace per method and status: finished trials filled, ASHA-stopped ones open."""
    out = []
    for method in [m for m in colors if m in set(pts["method"])]:
        for status, symbol in (("finished", "circle"), ("stopped", "circle-open")):
            mine = pts[(pts["method"] == method) & (pts["status"] == status)]
            if len(mine):
                name = method if status == "finished" else f"{method} (stopped)"
                out.append(go.Scatter(
                    x=mine[cost], y=mine["accuracy"], mode="markers", name=name, legendgroup=name,
                    marker={"color": colors[method], "symbol": symbol, "size": 8, "line": {"width": 1}},
                    text=[hover.get(t, t) for t in mine["trial_id"]], hoverinfo="text"))
    return out


def _chosen(pts: pd.DataFrame, cost: str, colors: dict[str, str], hover: dict[str, str]) -> list[go.Scatter]:
    """One diamond per method: held-out objective ± its 95% CI, cost median with the range of its measurements."""
    out = []
    for _, r in pts.iterrows():
        low, high = r[f"{cost}.low"], r[f"{cost}.high"]
        ranged = math.isfinite(low) and math.isfinite(high) and high > low
        text = (f"<b>{r['method']}</b>, chosen configuration(s)<br>held-out objective {fmt_score(r['accuracy'])}"
                + (f" ± {fmt_score(r['ci95'])}" if math.isfinite(r["ci95"]) else "") + f" (n = {int(r['n'])})<br>"
                f"{FRONTIER_COSTS[cost]}: {fmt_cost(cost, r[cost])}"
                + (f" (median; {fmt_cost(cost, low)}–{fmt_cost(cost, high)})" if ranged else ""))
        name = f"{r['method']} (held-out)"
        out.append(go.Scatter(
            x=[r[cost]], y=[r["accuracy"]], mode="markers", name=name, legendgroup=name,
            marker={"color": colors.get(r["method"], "grey"), "symbol": "diamond", "size": 11, "line": {"width": 1}},
            error_y={"type": "data", "array": [r["ci95"] if math.isfinite(r["ci95"]) else 0], "visible": True},
            error_x={"type": "data", "symmetric": False, "array": [high - r[cost] if ranged else 0],
                     "arrayminus": [r[cost] - low if ranged else 0], "visible": ranged},
            text=[text], hoverinfo="text"))
    return out


def _fronts(pts: pd.DataFrame, cost: str, noise: Noise, row: str, hover: dict[str, str]) -> list[go.Scatter]:
    """The dotted staircase with ringed points: over finished trials per fold (trials), over methods (chosen)."""
    if not noise.known:
        return []
    if row == "trials":
        groups = [g for _, g in pts[pts["status"] == "finished"].groupby("fold")]
        name = "Pareto front" + (" (each fold's own)" if len(groups) > 1 else "")
    else:
        groups, name = [pts], "Pareto front (held-out)"
    out = []
    for group in groups:
        front = pareto_front(group, cost, "accuracy", noise.factor)
        if len(front):
            labels = front["trial_id"] if "trial_id" in front else front["method"]
            out.append(go.Scatter(
                x=front[cost], y=front["accuracy"], mode="lines+markers", line={**FRONT_STYLE, "shape": "hv"},
                marker={"symbol": "circle-open", "size": 15, "color": "black", "line": {"width": 2}},
                name=name, legendgroup=name, text=[hover.get(str(t), str(t)) for t in labels], hoverinfo="text"))
    return out
