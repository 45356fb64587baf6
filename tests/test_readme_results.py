"""The README's "What the study finds" quotes the committed verdict run, and nothing else.

docs/results/verdict-5x2-160/ holds that run's small result files (no trials, no checkpoints). Its tables in
the README are what ``python -m study.analyze docs/results/verdict-5x2-160 --markdown`` prints from them, so
this test fails as soon as the text and the numbers part ways.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from study.analysis.markdown import cost_table, headline_table, verdict_table

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "docs" / "results" / "verdict-5x2-160"
METHODS = ["shared/gradnorm", "shared/equal", "dual"]


def findings() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## What the study finds"):readme.index("## Where to branch")]


def test_the_readme_tables_are_what_the_committed_files_hold():
    section = findings()
    for table in (headline_table(RUN), verdict_table(RUN), cost_table(RUN)):
        assert table in section, table


def test_the_readme_names_the_run_that_made_them():
    section = findings()
    manifest = json.loads((RUN / "manifest.json").read_text())
    assert manifest["git_commit"][:7] in section  # the commit the run measured
    argv = manifest["runs"][0]["argv"]
    for flag in ("--folds", "--seeds", "--epochs", "--imgsz", "--methods", "--split"):
        value = argv[argv.index(flag) + 1]
        assert re.search(rf"{re.escape(flag)} {re.escape(value)}\b", section), (flag, value)


def test_the_committed_files_are_one_complete_five_fold_run():
    folds = pd.read_parquet(RUN / "folds.parquet")
    runs = pd.read_parquet(RUN / "test_runs.parquet")
    headline = pd.read_parquet(RUN / "headline.parquet")
    verdict = pd.read_parquet(RUN / "verdict.parquet")
    costs = pd.read_parquet(RUN / "costs.parquet")
    assert folds["patient"].is_unique and sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    # every method on every fold with 2 seeds, each re-run scored once on its own fold's patients
    assert sorted(runs["method"].unique()) == sorted(METHODS)
    assert runs.groupby(["method", "fold"]).size().eq(2).all() and len(runs) == 30
    assert set(headline["method"]) == set(METHODS) and set(headline["n_folds"]) == {5}
    assert set(verdict["n_pairs"]) <= {5} and len(costs) == 15
    assert not list(RUN.glob("**/*.pt"))  # no checkpoints committed


def test_markdown_of_a_folder_without_the_held_out_files_is_one_line(tmp_path, capsys):
    from study.analyze import main as analyze_main
    from study.cli import run_cli

    (tmp_path / "headline.parquet").write_bytes((RUN / "headline.parquet").read_bytes())  # the verdict is missing
    assert run_cli(analyze_main, [str(tmp_path), "--markdown"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --markdown:") and "verdict.parquet" in err[0]
