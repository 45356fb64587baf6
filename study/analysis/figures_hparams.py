"""Hyperparameter effects: parallel coordinates, one-dimensional slices, importance bars."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.analysis.common import LAYOUT, use_log_axis, value_axis
from study.analysis.importance import RELIABLE_TRIALS, Importance
from study.analysis.loading import OBJECTIVE, SINGLE_TASK, Study
from trainables.wording import counted

SLICE_KEYS = ("balancer.alpha", "optim.lr", "optim.cls_lr", "balancer.weight_lr")


def _searched(study: Study) -> pd.DataFrame:
    """Finished multi-task trials of the search (a single-task objective is one task's score: not comparable)."""
    t = study.trials
    return t[(t["status"] == "finished") & ~t["is_repeat"] & t[OBJECTIVE].notna() & ~t["method"].isin(SINGLE_TASK)]


def _dimension(values: pd.Series, key: str) -> dict:
    """One parcoords axis; categorical values become integer positions with their labels as ticks,
    floats spanning more than a decade are shown as log10."""
    v = values
    if not pd.api.types.is_numeric_dtype(v) or pd.api.types.is_bool_dtype(v):
        labels = sorted({str(x) for x in v}, key=str)
        pos = {s: i for i, s in enumerate(labels)}
        return {"label": key, "values": [pos[str(x)] for x in v], "tickvals": list(range(len(labels))),
                "ticktext": labels, "range": [-0.3, len(labels) - 0.7] if len(labels) > 1 else [-1, 1]}
    x = v.astype(float)
    if use_log_axis(x, ratio=10):
        return {"label": f"log10 {key}", "values": np.log10(x).tolist()}
    return {"label": key, "values": x.tolist()}


def _scopes(study: Study) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """(name, trials, keys): the whole study over the keys every method searches, then each method
    with at least three searched trials over its own sub-space."""
    ok = _searched(study)
    if len(ok) < 2:
        return []
    present = [m for m in study.methods() if (ok["method"] == m).any()]
    searched = {m: study.method_params.get(m, []) for m in present}
    common = [k for k in searched[present[0]] if all(k in searched[m] for m in present) and ok[k].nunique() > 1]
    out = [("all methods", ok, common)]
    for m in present:
        part = ok[ok["method"] == m]
        keys = [k for k in searched[m] if part[k].nunique() > 1]
        if len(part) >= 3 and keys and (len(present) > 1 or keys != common):
            out.append((m, part, keys))
    return out


def parallel_figure(study: Study, notes: list[str]) -> go.Figure | None:
    """One parcoords (a WebGL trace: one per page keeps the browser's context count low) with a
    dropdown switching between the whole study and each method's own sub-space; lines coloured by
    the objective."""
    scopes = _scopes(study)
    if not scopes:
        notes.append("Parallel coordinates need at least two finished searched trials.")
        return None
    variants = []
    for name, part, keys in scopes:
        dims = []
        if name == "all methods" and part["method"].nunique() > 1:
            dims.append(_dimension(part["method"], "method"))
        dims += [_dimension(part[k], k) for k in keys]
        dims.append({"label": "objective", "values": part[OBJECTIVE].astype(float).tolist()})
        values = part[OBJECTIVE].astype(float)
        line = {"color": values.tolist(), "colorscale": "Viridis", "showscale": values.nunique() > 1,
                "colorbar": {"title": {"text": "objective"}}}
        variants.append((name, dims, line))
    name, dims, line = variants[0]
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line))
    buttons = [{"label": n, "method": "restyle", "args": [{"dimensions": [d], "line": [ln]}]}
               for n, d, ln in variants]
    fig.update_layout(**{**LAYOUT, "margin": {"l": 140, "r": 60, "t": 110, "b": 40}}, height=480,
                      title="Parallel coordinates of the finished searched trials (colour: objective)",
                      updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right",
                                    "y": 1.2, "yanchor": "bottom"}] if len(buttons) > 1 else [])
    return fig


def slices_figure(study: Study, notes: list[str]) -> go.Figure | None:
    """The objective against alpha and the learning rates, each panel holding only the trials of
    methods that search that key, coloured by method."""
    ok = _searched(study)
    panels = []
    for key in SLICE_KEYS:
        methods = [m for m in study.methods() if key in study.method_params.get(m, [])]
        part = ok[ok["method"].isin(methods)]
        if key in part and part[key].nunique() > 1:
            panels.append((key, part))
    if not panels:
        notes.append("Slices: neither alpha nor a learning rate varies among the finished searched trials.")
        return None
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[k for k, _ in panels])
    colors, hover, shown = study.colors(), study.hover, set()
    for j, (key, part) in enumerate(panels, start=1):
        for method, pts in part.groupby("method", sort=False):
            fig.add_trace(go.Scatter(x=pts[key], y=pts[OBJECTIVE], mode="markers", name=method, legendgroup=method,
                                     showlegend=method not in shown, marker={"color": colors[method], "size": 9},
                                     text=[hover[t] for t in pts["trial_id"]], hoverinfo="text"), row=1, col=j)
            shown.add(method)
        fig.update_xaxes(**value_axis(part[key], ratio=10), row=1, col=j)
    fig.update_yaxes(title_text="objective", row=1, col=1)
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(**LAYOUT, height=380, title="Objective against alpha and the learning rates")
    return fig


def importance_figure(imp: Importance, notes: list[str], scope: str = "") -> go.Figure | None:
    """Bars of ``imp``'s importances; ``scope`` says which trials they rank (e.g. one method's)."""
    if not imp.values:
        notes.append(imp.note)
        return None
    items = sorted(imp.values.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker={"color": "#4c78a8"}, text=[f"{v:.2f}" for _, v in items], textposition="auto",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    # the details on a second, smaller line: one long line ran under the toolbar and was cut
    fig.update_layout(**{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 80}}, height=max(270, 120 + 34 * len(items)),
                      xaxis_title="importance (sums to 1)",
                      title=f"Hyperparameter importance for the objective<br><sup>{scope + ', ' if scope else ''}"
                            f"{imp.evaluator}, {counted(imp.n_trials, 'trial')}</sup>")
    if imp.caution:  # too few trials: said under the bars (travels with the PNG) and in the report's notes
        fig.update_layout(margin={**fig.layout.margin.to_plotly_json(), "b": 90})
        fig.add_annotation(text=f"<b>Unreliable ranking</b>: only {counted(imp.n_trials, 'trial')} (fewer than "
                                f"{RELIABLE_TRIALS}); see the notes.", showarrow=False, xref="paper", yref="paper",
                           x=0, y=0, xanchor="left", yanchor="top", yshift=-42, font={"color": "#b45309"})
        notes.append(imp.caution)
    if not math.isclose(sum(imp.values.values()), 1.0, abs_tol=1e-6):
        notes.append("Hyperparameter importances do not sum to 1 (some were not finite and are left out).")
    return fig
