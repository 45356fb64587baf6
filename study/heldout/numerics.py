"""How each held-out re-run computed: its resolved precision and memory format, and whether a study mixes them.

A re-run records how ``auto`` resolved where it trained (trials.parquet's ``eff.precision`` /
``eff.memory_format``, trainables/precision.py: ``Numerics.as_row``; its checkpoint's ``numerics`` too), and
test_runs.parquet carries the same two columns under the same names, one value per re-run (the test split is
scored at the precision it trained at). A verdict over re-runs that trained in bf16 and in fp32 compares
numerics as well as methods: ``mixed_numerics`` says so in one line (study/tuning/resume.py refuses a resume
that would make such a study; a study resumed before that check existed may be one).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd

from trainables.wording import counted

COLUMNS = ("eff.precision", "eff.memory_format")
NOT_RECORDED = "not recorded"


def recorded_numerics(row: Mapping[str, Any], state: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{"eff.precision": ..., "eff.memory_format": ...}`` from a trials.parquet row, or where the row has
    none (a trial from before they were recorded) from its checkpoint ``state``'s ``numerics``; only the
    values known."""
    stored = (state or {}).get("numerics") or {}
    out = {}
    for column in COLUMNS:
        value = row.get(column)
        if _missing(value):
            value = stored.get(column.removeprefix("eff."))
        if not _missing(value):
            out[column] = str(value)
    return out


def mixed_numerics(runs: pd.DataFrame) -> str:
    """"" when every scored re-run of ``runs`` (test_runs.parquet) computed at one precision and memory format,
    or when ``runs`` does not record them (a study from before); else one line naming each combination and how
    many scored re-runs used it, most first: ``bf16/channels_last (20 re-runs) and fp32/contiguous (10)``.
    A scored re-run without a record, among recorded ones, is its own group (``not recorded``): that it matches
    the others cannot be shown."""
    if runs.empty or not any(c in runs for c in COLUMNS):
        return ""
    scored = runs[runs["scored"].fillna(False).astype(bool)] if "scored" in runs else runs
    labels = []
    for _, r in scored.iterrows():
        values = [r.get(c) if c in scored else None for c in COLUMNS]
        labels.append(NOT_RECORDED if all(_missing(v) for v in values)
                      else "/".join("?" if _missing(v) else str(v) for v in values))
    counts = sorted(Counter(labels).items(), key=lambda kv: (-kv[1], kv[0]))
    if len(counts) < 2:
        return ""
    parts = [f"{label} ({counted(n, 're-run')})" if i == 0 else f"{label} ({n})"
             for i, (label, n) in enumerate(counts)]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA
