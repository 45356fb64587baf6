"""The README's "What the study finds" quotes the committed verdict run, and nothing else.

docs/results/verdict-5x2-160/ holds that run's small result files (no trials, no checkpoints). Its tables in
the README are what ``python -m study.analyze docs/results/verdict-5x2-160 --markdown`` prints from them, so
this test fails as soon as the text and the numbers part ways. The section is found wherever it lives (the
front page today, or a page of docs/), and the command the pages show for that run is the run's own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from study.analysis.markdown import cost_table, headline_table, verdict_table
from tests.markdown_pages import ROOT, documented_commands, pages

RUN = ROOT / "docs" / "results" / "verdict-5x2-160"
METHODS = ["shared/gradnorm", "shared/equal", "dual"]
HEADING = "## What the study finds"


def findings() -> str:
    """The section, from its heading to the next heading of its level (or the page's end), on the one page
    that has it."""
    found = [text for text in (page.read_text() for page in pages()) if f"\n{HEADING}\n" in text]
    assert len(found) == 1, f"{HEADING!r} on {len(found)} pages"
    section = found[0].split(f"\n{HEADING}\n", 1)[1]
    return HEADING + "\n" + re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]


def test_the_readme_tables_are_what_the_committed_files_hold():
    section = findings()
    for table in (headline_table(RUN), verdict_table(RUN), cost_table(RUN)):
        assert table in section, table


def test_the_readme_names_the_run_that_made_them():
    manifest = json.loads((RUN / "manifest.json").read_text())
    assert manifest["git_commit"][:7] in findings()  # the commit the run measured


def test_the_command_shown_is_the_run_that_made_them():
    """The pages' `python -m study.run ... --name verdict-5x2-160` reads, through study.run's own parser, as
    every sitting of the run did — but where it was stored, whether it resumed, and the data set's folder
    (published as its last folder and file name)."""
    from study.run import parser

    def settings(argv: list[str]) -> dict:
        args = vars(parser().parse_args(argv))
        args["data"] = Path(args["data"]).parts[-2:]
        return {k: v for k, v in args.items() if k not in ("storage", "resume")}

    manifest = json.loads((RUN / "manifest.json").read_text())
    name = manifest["runs"][0]["argv"][manifest["runs"][0]["argv"].index("--name") + 1]
    shown = [argv for _, _, module, argv in documented_commands() if module == "study.run" and name in argv]
    assert shown, f"no page shows the command of {name}"
    for argv in shown:
        for sitting in manifest["runs"]:
            assert settings(argv) == settings(sitting["argv"])


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
