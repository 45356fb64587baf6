"""``python -m study.verdict STORAGE/NAME``: rebuild a study's held-out headline and verdict from its re-runs.

Reads ``test_runs.parquet`` (every re-run's test scores: what training produced), ``costs.parquet`` and, for a
folds study, ``folds.parquet``; rewrites ``headline.parquet`` and ``verdict.parquet`` with today's rules —
intervals over folds corrected for their overlapping training sets (study/heldout/correction.py), conclusions
read against equivalence margins (study/heldout/margins.py, ``--margin``) and Holm's family-wise reading
(study/heldout/verdict.py) — and prints them. Nothing is trained or scored again, so a study from before these
rules (or a published folder of one, docs/results/) gets them in seconds. The margins used are those of
``--margin``, else the ones the study recorded (manifest.json), else the defaults; ``manifest.json`` gains a
``verdict_rebuilt`` entry saying when, by which commit, with which margins and planned pairs (``--against``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.headline import HEADLINE_FILE, RUNS_FILE
from study.cli import ArgumentParser, run_cli
from study.errors import UsageError
from study.heldout import reruns
from study.heldout.margins import DEFAULT_MARGINS, parse_margins
from study.heldout.verdict import correction_for, print_verdict, write_verdict
from study.store.manifest import project_code_state
from study.store.trials import write_atomic, write_json_atomic

MANIFEST = "manifest.json"


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.verdict", description=__doc__.split("\n\n")[0])
    p.add_argument("study", help="the study folder STORAGE/NAME (or a published one) holding test_runs.parquet")
    p.add_argument("--margin", action="append", default=None, metavar="METRIC=VALUE",
                   help="an equivalence margin, e.g. map50=0.05 (repeatable; default: the study's, else "
                        "study/heldout/margins.py's)")
    p.add_argument("--against", default=None, metavar="M1,M2",
                   help="the planned comparisons: every method against these, Holm's correction over those pairs "
                        "only (default: the study's --against, else every pair of methods)")
    return p


def chosen_of(runs: pd.DataFrame) -> pd.DataFrame:
    """The configurations the re-runs repeat, per method (and fold): ``method``, ``trial_id`` (and ``fold``)."""
    keys = ["method", "repeat_of", *(["fold"] if "fold" in runs else [])]
    return runs[keys].drop_duplicates().rename(columns={"repeat_of": "trial_id"}).reset_index(drop=True)


def recorded_margins(manifest: dict[str, Any]) -> dict[str, float]:
    """The margins a study recorded (its settings), else the defaults."""
    return {**DEFAULT_MARGINS, **((manifest.get("settings") or {}).get("margins") or {})}


def rebuild(study_dir: Path, margins: dict[str, float], against: list[str] | None = None) -> tuple[Path, Path]:
    """Rewrite headline.parquet and verdict.parquet of ``study_dir`` from its test_runs.parquet and costs.parquet
    (the verdict's pairs: every method against ``against``, or every pair); returns their paths."""
    runs_path = study_dir / RUNS_FILE
    if not runs_path.is_file():
        raise UsageError(f"{study_dir}: no {RUNS_FILE}: the headline and verdict are rebuilt from a study's scored "
                         "re-runs (a study run with --test or --folds)")
    runs = pd.read_parquet(runs_path)
    if not reruns.has_score(runs).any():
        raise UsageError(f"{runs_path}: no re-run has a test score; there is nothing to rebuild from")
    methods = list(dict.fromkeys(runs["method"]))
    if unknown := [m for m in against or () if m not in methods]:
        raise UsageError(f"--against {unknown[0]}: no re-run of {study_dir.name} is of that method (it has "
                         f"{', '.join(methods)})")
    costs_path = study_dir / reruns.COSTS_FILE
    costs = pd.read_parquet(costs_path) if costs_path.is_file() else pd.DataFrame(columns=["method"])
    old = pd.read_parquet(study_dir / HEADLINE_FILE) if (study_dir / HEADLINE_FILE).is_file() else pd.DataFrame()
    leaks = bool(old["split_leaks_patients"].any()) if "split_leaks_patients" in old else False
    first = runs.iloc[0]
    rows = reruns.headline_rows(chosen_of(runs), runs, costs, str(first.get("split_by", "")),
                                int(first.get("split_seed", 0)), str(first.get("data", "")), leaks,
                                correction=correction_for(study_dir, runs))
    headline = study_dir / HEADLINE_FILE
    write_atomic(reruns.headline_table(rows), headline)
    return headline, write_verdict(study_dir, runs, costs, margins, against)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    study_dir = Path(args.study).expanduser()
    if not study_dir.is_dir():
        raise UsageError(f"{study_dir}: no such folder; give the study folder STORAGE/NAME")
    manifest_path = study_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    margins = parse_margins(args.margin) if args.margin else recorded_margins(manifest)
    against = args.against.split(",") if args.against else (manifest.get("settings") or {}).get("against")
    headline, verdict = rebuild(study_dir, margins, against)
    reruns.print_headline(headline)
    print_verdict(verdict)
    if manifest:
        manifest["verdict_rebuilt"] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                       "command": "python -m study.verdict", "code": project_code_state(),
                                       "margins": margins, "against": against,
                                       "from": [RUNS_FILE, reruns.COSTS_FILE, "folds.parquet"]}
        write_json_atomic(manifest, manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
