"""``python -m study.analyze``: the report of hand-made and degenerate studies, and bad input."""

from __future__ import annotations

import importlib.util
import re

import pytest

from study.analysis.loading import load_study
from study.analysis.report import build_report
from study.analyze import main
from study.cli import run_cli
from study.store.trials import trials_table, write_atomic
from tests.test_analysis_helpers import TRIALS, write_study


def analyze(argv, capsys):
    code = run_cli(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_is_one_self_contained_page_with_every_section(tmp_path, capsys):
    study = write_study(tmp_path / "s")
    code, out, _ = analyze([study], capsys)
    assert code == 0 and f"report: {study / 'report.html'}" in out
    page = (study / "report.html").read_text()
    # plotly.js inline exactly once, nothing fetched from the network
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert not re.search(r"<script[^>]+src=", page)  # (plotly.js itself names a CDN only for geo maps)
    assert page.count('class="plotly-graph-div"') == 7
    for anchor in ("summary", "headline", "pareto", "balance", "curves", "hparams", "failed", "provenance"):
        assert f'<section id="{anchor}">' in page
    # the hand-computed headline numbers (tests/test_analysis_headline.py) reach the page
    assert "shared/gradnorm -8.8%" in page and "dual -5.0%" in page
    # scores with three decimals, cost ratios with three significant figures (one precision per metric)
    assert "0.570 ± 0.050" in page and "3 (repeats)" in page and "0.550× the train time" in page
    assert "injected failure" in page  # the failed trials table
    assert "seed repeat of g2" in page and "balancer.alpha = 1.5" in page  # hover text with hyperparameters


def test_report_with_one_trial(tmp_path, capsys):
    study = write_study(tmp_path / "s", [t for t in TRIALS if t[0] == "g2"])
    code, _, err = analyze([study], capsys)
    assert code == 0
    page = (study / "report.html").read_text()
    # a study of one method: nothing about the methods it never ran
    assert "No dual trial" not in page and "No det_only trial" not in page and "comparison is not available" not in page
    assert "Hyperparameter importance needs at least 3" in page and "note:" in err


def test_report_when_every_trial_failed(tmp_path):
    study = load_study(write_study(tmp_path / "s", [t for t in TRIALS if t[6] in ("error", "diverged")]))
    report = build_report(study)
    assert "No trial finished with a validation score (1 diverged, 1 error)" in report.html
    assert "injected failure" in report.html
    assert set(report.figures) <= {"curves"}  # nothing to compare; no exception either


def test_report_of_an_empty_study_and_without_epochs(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    write_atomic(trials_table([]), folder / "trials.parquet")
    code, _, _ = analyze([folder], capsys)
    assert code == 0 and "holds no trials yet" in (folder / "report.html").read_text()
    study = write_study(tmp_path / "s", manifest=False)
    (study / "epochs.parquet").unlink()
    report = build_report(load_study(study))
    assert "epochs.parquet is missing" in report.html and "No manifest.json" in report.html
    assert "pareto" in report.figures and "curves" not in report.figures


def test_only_single_task_baselines(tmp_path):
    study = write_study(tmp_path / "s", [t for t in TRIALS if t[1] in ("det_only", "cls_only")])
    report = build_report(load_study(study))
    assert "Only single-task baselines finished" in report.html


def test_bad_folders_are_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = analyze([tmp_path / "nope"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no such folder" in err
    code, _, err = analyze([tmp_path], capsys)
    assert code == 2 and "no trials.parquet here" in err
    (tmp_path / "trials.parquet").write_bytes(b"not parquet")
    code, _, err = analyze([tmp_path], capsys)
    assert code == 2 and "not a readable Parquet file" in err and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("kaleido") is not None, reason="kaleido is installed")
def test_png_without_kaleido_says_so(tmp_path, capsys):
    study = write_study(tmp_path / "s")
    code, _, err = analyze([study, "--format", "png"], capsys)
    assert code == 2 and "kaleido is not installed" in err and err.count("\n") == 1
    assert not (study / "report.html").exists()


@pytest.mark.skipif(importlib.util.find_spec("kaleido") is None, reason="kaleido is not installed (optional)")
def test_png_with_kaleido_writes_the_main_figures(tmp_path, capsys):
    study = write_study(tmp_path / "s")
    code, out, _ = analyze([study, "--format", "png"], capsys)
    assert code == 0
    for name in ("headline", "pareto", "balance", "curves", "slices", "importance"):
        png = study / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"figure: {png}" in out
