"""Per-epoch figures from epochs.parquet: learning curves, task weights and gradient cosine."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.analysis.common import LAYOUT, fmt
from study.analysis.loading import Study
from trainables.metrics import names

# The loss parts (their sum loss.det is left out) and the headline validation scores; labels from the registry
CURVES = {k: names.label(k) for k in ("loss.box", "loss.obj", "loss.cls", "loss.view")} | {
    k: f"val {names.label(k)}" for k in names.HEADLINE if names.REGISTRY[k].group == "val"
}
END_MARK = {"stopped": ("x", "stopped by the scheduler (ASHA)"), "diverged": ("star-triangle-up", "diverged"),
            "error": ("square-x-open", "error"), "oom": ("square-x-open", "out of memory")}
COLUMNS = 4


def _epochs_with_method(study: Study) -> pd.DataFrame:
    ep = study.epochs
    if ep.empty or "epoch" not in ep:
        return pd.DataFrame()
    meta = study.trials[["trial_id", "method", "status"]].rename(columns={"status": "trial_status"})
    ep = ep.drop(columns=[c for c in ("method",) if c in ep]).merge(meta, on="trial_id", how="inner")
    return ep.sort_values(["trial_id", "epoch"])


def learning_curves_figure(study: Study, notes: list[str]) -> go.Figure | None:
    """Small multiples (loss parts, validation metrics) against epoch; one line per trial coloured by
    method; a trial that did not finish ends in a marker naming why (ASHA stop, divergence, error).
    A dropdown shows one trial at a time."""
    ep = _epochs_with_method(study)
    panels = [c for c in CURVES if c in ep and ep[c].notna().any()] if not ep.empty else []
    if not panels:
        notes.append("Learning curves: no per-epoch losses or validation metrics recorded.")
        return None
    rows = math.ceil(len(panels) / COLUMNS)
    fig = make_subplots(rows=rows, cols=COLUMNS, subplot_titles=[CURVES[c] for c in panels],
                        horizontal_spacing=0.06, vertical_spacing=0.14)
    colors = study.colors()
    owners: list[str] = []  # the trial of each trace, for the dropdown
    shown: set[str] = set()
    trial_ids = [t for t in study.trials["trial_id"] if t in set(ep["trial_id"])]
    for tid in trial_ids:
        tr = ep[ep["trial_id"] == tid]
        method, status = tr["method"].iloc[0], tr["trial_status"].iloc[0]
        for k, col in enumerate(panels):
            r, c = k // COLUMNS + 1, k % COLUMNS + 1
            pts = tr[tr[col].notna()]
            if pts.empty:
                continue
            fig.add_trace(go.Scatter(
                x=pts["epoch"], y=pts[col], mode="lines+markers" if len(pts) < 3 else "lines",
                line={"color": colors[method], "width": 1.5}, marker={"size": 5},
                name=method, legendgroup=method, showlegend=method not in shown,
                hovertemplate=f"{tid} ({method}, {status})<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"), row=r, col=c)
            shown.add(method)
            owners.append(tid)
            if status in END_MARK:
                symbol, label = END_MARK[status]
                last = pts.iloc[-1]
                fig.add_trace(go.Scatter(
                    x=[last["epoch"]], y=[last[col]], mode="markers", name=label, legendgroup=label,
                    showlegend=label not in shown, marker={"symbol": symbol, "size": 11, "color": "black"},
                    hovertext=f"{tid}: {label} after epoch {fmt(last['epoch'])}", hoverinfo="text"), row=r, col=c)
                shown.add(label)
                owners.append(tid)
    fig.update_xaxes(title_text="epoch", row=rows)
    fig.update_xaxes(dtick=_epoch_tick(ep))
    fig.update_yaxes(rangemode="tozero")  # losses and scores are never negative
    buttons = [{"label": "all trials", "method": "restyle", "args": [{"visible": [True] * len(owners)}]}]
    for tid in trial_ids:
        method = study.trials.loc[study.trials["trial_id"] == tid, "method"].iloc[0]
        buttons.append({"label": f"{tid} ({method})", "method": "restyle",
                        "args": [{"visible": [o == tid for o in owners]}]})
    fig.update_layout(**LAYOUT, height=140 + 300 * rows, title="Learning curves per trial",
                      updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right",
                                    "y": 1.0 + 60 / (140 + 300 * rows), "yanchor": "bottom"}])
    return fig


def balance_figure(study: Study, notes: list[str]) -> go.Figure | None:
    """One row per method with a balancer: task weights (det solid, view dashed) and the gradient
    cosine between the tasks on the shared trunk, per epoch, one colour per trial."""
    ep = _epochs_with_method(study)
    if ep.empty:
        notes.append("Task weights and gradient cosine: no per-epoch rows recorded.")
        return None
    methods = []
    for m in study.methods():
        part = ep[ep["method"] == m]
        has = [c for c in ("weight.det", "weight.view", "grad.cosine") if c in part and part[c].notna().any()]
        if has and m.startswith("shared") and not m.startswith("shared@0/"):  # shared@0: nothing shared
            methods.append(m)
    skipped = [m for m in study.methods() if m not in methods]
    if skipped:
        notes.append("Task weights and gradient cosine are shown for the shared backbone only: "
                     f"{', '.join(skipped)} {'has' if len(skipped) == 1 else 'have'} no shared weights to "
                     "balance (each network trains on its own loss) or no recorded values.")
    if not methods:
        return None
    fig = make_subplots(rows=len(methods), cols=2, shared_xaxes=True, vertical_spacing=0.06 / max(1, len(methods) / 3),
                        subplot_titles=[t for m in methods for t in (f"{m}: task weights", f"{m}: gradient cosine")])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf"]
    for i, m in enumerate(methods, start=1):
        part = ep[ep["method"] == m]
        for k, (tid, tr) in enumerate(part.groupby("trial_id", sort=False)):
            color = palette[k % len(palette)]
            for col, dash, task in (("weight.det", "solid", "det"), ("weight.view", "dash", "view")):
                if col in tr and tr[col].notna().any():
                    fig.add_trace(go.Scatter(x=tr["epoch"], y=tr[col], mode="lines+markers", name=str(tid),
                                             legendgroup=str(tid), showlegend=task == "det",  # a colour = a trial
                                             line={"color": color, "dash": dash, "width": 1.5}, marker={"size": 4},
                                             hovertemplate=f"{tid} weight.{task}<br>epoch %{{x}}: %{{y:.4g}}"
                                                           "<extra></extra>"), row=i, col=1)
            if "grad.cosine" in tr and tr["grad.cosine"].notna().any():
                fig.add_trace(go.Scatter(x=tr["epoch"], y=tr["grad.cosine"], mode="lines+markers", showlegend=False,
                                         name=str(tid), legendgroup=str(tid),
                                         line={"color": color, "width": 1.5}, marker={"size": 4},
                                         hovertemplate=f"{tid} cosine<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>"),
                              row=i, col=2)
        fig.add_hline(y=0, line={"color": "grey", "width": 1}, row=i, col=2)
        fig.update_yaxes(range=[-1.05, 1.05], row=i, col=2)
    fig.update_xaxes(title_text="epoch", row=len(methods))
    fig.update_xaxes(dtick=_epoch_tick(ep))
    fig.update_layout(**LAYOUT, height=120 + 240 * len(methods),
                      title="Task weights (det solid, view dashed) and det/view gradient cosine, per trial",
                      legend={"title": {"text": "trial"}})
    return fig


def _epoch_tick(ep: pd.DataFrame) -> int:
    """Whole epochs on the axis, about ten ticks at most."""
    return max(1, math.ceil(float(ep["epoch"].max()) / 10))
