"""The README's "What the study finds" quotes the committed held-out runs, and nothing else.

docs/results/<run>/ holds each run's small result files (no checkpoints); tests/published_runs.py
names the runs. Their tables in the README are what ``python -m study.analyze docs/results/<run> --markdown``
prints from them, so these tests fail as soon as the text and the numbers part ways. The section is found
wherever it lives (the front page today, or a page of docs/), and the command the pages show for each run is
the run's own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from study.analysis.markdown import chosen_table, cost_table, headline_table, importance_table, verdict_table
from study.heldout.chosen import CHOSEN_FILE
from study.heldout.tuning_gain import TUNING_GAIN_FILE
from tests.markdown_pages import documented_commands, pages
from tests.published_runs import RESULTS, RUNS, PublishedRun, each_run

HEADING = "## What the study finds"


def findings() -> str:
    """The section, from its heading to the next heading of its level (or the page's end), on the one page
    that has it."""
    found = [text for text in (page.read_text() for page in pages()) if f"\n{HEADING}\n" in text]
    assert len(found) == 1, f"{HEADING!r} on {len(found)} pages"
    section = found[0].split(f"\n{HEADING}\n", 1)[1]
    return HEADING + "\n" + re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]


@each_run
def test_the_readme_tables_are_what_the_committed_files_hold(run: PublishedRun):
    section = findings()
    for table in (headline_table(run.folder), verdict_table(run.folder), cost_table(run.folder)):
        assert table in section, table
    # a searched run's: what tuning did (python -m study.tuned), what the searches chose and which hyperparameters
    # mattered, each where its file is published
    if (run.folder / TUNING_GAIN_FILE).is_file():
        assert verdict_table(run.folder, TUNING_GAIN_FILE) in section
    if (run.folder / CHOSEN_FILE).is_file():
        assert chosen_table(run.folder) in section
    if (run.folder / "optuna.db").is_file():
        assert importance_table(run.folder) in section


@each_run
def test_the_readme_names_the_run_that_made_them(run: PublishedRun):
    manifest = json.loads((run.folder / "manifest.json").read_text())
    assert manifest["git_commit"][:7] in findings()  # the commit the run measured


@each_run
def test_the_command_shown_is_the_run_that_made_them(run: PublishedRun):
    """The pages' `python -m study.run ... --name <run>` reads, through study.run's own parser, as every
    sitting of the run did — but where it was stored, whether it resumed, and the data set's folder
    (published as its last folder and file name)."""
    from study.run import parser

    def settings(argv: list[str]) -> dict:
        args = vars(parser().parse_args(argv))
        args["data"] = Path(args["data"]).parts[-2:]
        return {k: v for k, v in args.items() if k not in ("storage", "resume")}

    manifest = json.loads((run.folder / "manifest.json").read_text())
    name = manifest["runs"][0]["argv"][manifest["runs"][0]["argv"].index("--name") + 1]
    shown = [argv for _, _, module, argv in documented_commands() if module == "study.run" and name in argv]
    assert shown, f"no page shows the command of {name}"
    for argv in shown:
        for sitting in manifest["runs"]:
            assert settings(argv) == settings(sitting["argv"])


@each_run
def test_the_committed_files_are_one_complete_run(run: PublishedRun):
    folds = pd.read_parquet(run.folder / "folds.parquet")
    runs = pd.read_parquet(run.folder / "test_runs.parquet")
    headline = pd.read_parquet(run.folder / "headline.parquet")
    verdict = pd.read_parquet(run.folder / "verdict.parquet")
    costs = pd.read_parquet(run.folder / "costs.parquet")
    assert folds["patient"].is_unique and sorted(folds["fold"].unique()) == list(range(run.folds))
    # every method on every fold with its seeds, each re-run scored once on its own fold's patients
    assert sorted(runs["method"].unique()) == sorted(run.methods)
    assert runs.groupby(["method", "fold"]).size().eq(run.seeds).all()
    assert len(runs) == len(run.methods) * run.folds * run.seeds and runs["scored"].astype(bool).all()
    assert set(headline["method"]) == set(run.methods) and set(headline["n_folds"]) == {run.folds}
    assert set(verdict["n_pairs"]) <= {run.folds} and len(costs) == len(run.methods) * run.folds
    compared = {frozenset(pair) for pair in zip(verdict["method_a"], verdict["method_b"], strict=True)}
    assert compared == run.pairs  # every planned pair, and no other (3 for the verdict, 13 with --against)
    assert not list(run.folder.glob("**/*.pt"))  # no checkpoints committed


@pytest.mark.parametrize("run", [run for run in RUNS if run.same_folds_as], ids=lambda run: run.name)
def test_a_run_promised_on_the_same_folds_dealt_the_same_patients(run: PublishedRun):
    mine = pd.read_parquet(run.folder / "folds.parquet").sort_values("patient").reset_index(drop=True)
    theirs = pd.read_parquet(RESULTS / run.same_folds_as / "folds.parquet")
    pd.testing.assert_frame_equal(mine, theirs.sort_values("patient").reset_index(drop=True))


def test_every_published_fold_run_is_held_to_its_text():
    """A run published beside these with test_runs.parquet but missing from tests/published_runs.py would
    be quoted with nothing holding it."""
    held_out = {path.parent.name for path in RESULTS.glob("*/test_runs.parquet")}
    assert held_out == {run.name for run in RUNS}


def test_markdown_of_a_folder_without_the_held_out_files_is_one_line(tmp_path, capsys):
    from study.analyze import main as analyze_main
    from study.cli import run_cli

    headline = RUNS[0].folder / "headline.parquet"
    (tmp_path / "headline.parquet").write_bytes(headline.read_bytes())  # the verdict is missing
    assert run_cli(analyze_main, [str(tmp_path), "--markdown"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --markdown:") and "verdict.parquet" in err[0]
