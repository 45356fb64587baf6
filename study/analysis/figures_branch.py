"""Where to branch: accuracy, cost and gradient interference against the number of shared backbone units.

One page from dual (0 units shared) to the fully shared model (every unit up to the view head's level):
each finished shared-backbone trial is a point at its split (``eff.shared_units``, or its resolved
``model.shared_stages`` for trials recorded before that column), with the mean per split joined by a line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.analysis.common import LAYOUT
from study.analysis.loading import Study
from trainables.config import view_level_units
from trainables.metrics import names

SPLIT = "split"  # the column this module adds: shared backbone units of the trial
# (trials.parquet column, panel title): accuracy first, then costs, then the tasks' gradients on what they share
PANELS = (
    ("best.val.map50", "mAP@0.5 (best epoch)"),
    ("best.val.view_accuracy", "view accuracy (best epoch)"),
    (names.trial_column("grad.cosine"), "gradient cosine on the shared units"),
    ("eff.params_total", "parameters"),
    ("eff.gflops", "GFLOPs / image"),
    ("step_s", "training step (s; trials side by side)"),
)


def split_of(trials: pd.DataFrame) -> pd.Series:
    """Each trial's shared backbone units: ``eff.shared_units`` where recorded, else ``model.shared_stages``
    resolved (-1, or no column: every unit up to ``model.cls_level``'s level); NaN for other architectures."""
    levels = trials["model.cls_level"] if "model.cls_level" in trials else pd.Series("p4", index=trials.index)
    stages = pd.to_numeric(trials["model.shared_stages"], errors="coerce") if "model.shared_stages" in trials \
        else pd.Series(-1.0, index=trials.index)
    resolved = [float(view_level_units(str(lv))) if not math.isfinite(k) or k < 0 else float(k)
                for lv, k in zip(levels.fillna("p4"), stages.fillna(-1.0), strict=True)]
    split = pd.Series(resolved, index=trials.index)
    if "eff.shared_units" in trials:
        recorded = pd.to_numeric(trials["eff.shared_units"], errors="coerce")
        split = recorded.where(recorded.notna(), split)
    return split.where(trials["arch"] == "shared")


def branch_figure(study: Study, notes: list[str]) -> go.Figure | None:
    """Six panels against the split; None (and a note) unless finished shared trials span two splits or more."""
    t = study.trials
    trials = t[(t["status"] == "finished") & (t["arch"] == "shared")].copy()
    if trials.empty:
        return None
    trials[SPLIT] = split_of(trials)
    if trials[SPLIT].nunique() < 2:
        return None  # one split: nothing to draw against it (most studies)
    batch = pd.to_numeric(trials.get("data.batch"), errors="coerce")
    trials["step_s"] = batch / pd.to_numeric(trials.get("throughput.img_per_s"), errors="coerce")
    panels = [(col, title) for col, title in PANELS if col in trials and trials[col].notna().any()]
    fig = make_subplots(rows=2, cols=3, subplot_titles=[title for _, title in panels], horizontal_spacing=0.08,
                        vertical_spacing=0.16)
    hover = study.hover
    for i, (col, _) in enumerate(panels):
        row, column = divmod(i, 3)
        pts = trials[trials[col].notna()]
        jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(pts))  # repeats at one split stay visible
        fig.add_trace(go.Scatter(x=pts[SPLIT] + jitter, y=pts[col], mode="markers", name="trial",
                                 legendgroup="trial", showlegend=i == 0, marker={"color": "#4c78a8", "size": 7},
                                 text=[hover.get(tid, tid) for tid in pts["trial_id"]], hoverinfo="text"),
                      row=row + 1, col=column + 1)
        means = pts.groupby(SPLIT)[col].mean()
        fig.add_trace(go.Scatter(x=means.index, y=means.values, mode="lines+markers", name="mean per split",
                                 legendgroup="mean", showlegend=i == 0, line={"color": "black", "width": 1.5},
                                 marker={"symbol": "diamond", "size": 9, "color": "black"}),
                      row=row + 1, col=column + 1)
        fig.update_xaxes(title_text="shared backbone units (0 = dual)", dtick=1, row=row + 1, col=column + 1)
    missing = [title for col, title in PANELS if (col, title) not in panels]
    if missing:
        notes.append(f"Where to branch: no trial recorded {', '.join(missing)}.")
    fig.update_layout(**LAYOUT, height=640, title="Where to branch: accuracy and cost against the shared units")
    return fig
