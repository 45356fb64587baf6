"""The phase after the re-runs: costs measured alone, then (``--test``) every re-run scored on the test split.

Writes ``costs.parquet`` (study/heldout/costs.py), ``test_runs.parquet`` and ``headline.parquet``
(study/heldout/reruns.py) and, outside a folds study, ``verdict.parquet`` (study/heldout/verdict.py).
A resumed study keeps the costs and scores it has (idempotent).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from study.heldout import reruns
from study.heldout.costs import measure_isolated
from study.heldout.verdict import print_verdict, write_verdict
from study.tuning.settings import StudySettings
from trainables.config import TrialConfig
from trainables.data.splits import split_overlap, split_seed_of, without_test
from trainables.wording import counted


def run_heldout(s: StudySettings, study_dir: Path, data: Any, chosen: Any) -> None:
    """Measure each method's chosen configuration alone; with ``s.test``, score its re-runs on the test split."""
    if chosen.empty:
        print("costs/test: no finished trial to measure or score", file=sys.stderr)
        return
    best = chosen.groupby("method", sort=False).head(1)  # each method's chosen configuration
    costs = reruns.read_costs(study_dir, best)
    if costs is None:
        print(f"costs: {counted(len(best), 'configuration')}, each alone on a worker Ray keeps free "
              "of other trials (other programs on this machine still slow it)", flush=True)
        costs = measure_isolated(best, without_test(data), gpu=s.gpus_per_trial > 0)
        print(f"costs: {reruns.write_costs(study_dir, costs)}")
    if not s.test:
        return
    data_cfg = TrialConfig.from_partial(s.config).data
    runs = reruns.score_reruns(study_dir, chosen, scored=reruns.read_runs(study_dir), study_seed=s.seed)
    leaks = split_overlap(data.groups, {k: v for k, v in data.splits.items() if len(v)}).leaks
    path = reruns.write_heldout(study_dir, chosen, runs, costs, data_cfg.split, split_seed_of(data_cfg, s.seed),
                                data_cfg.source, leaks)
    if not s.folds:  # a folds study prints (and pairs) its folds together (study/heldout/folds.py)
        reruns.print_headline(path)
        if len(runs) and reruns.has_score(runs).any():
            print_verdict(write_verdict(study_dir, runs, costs, s.margins, s.against))
