"""A model's parameter count reads the same everywhere: exact, with thousands separators (study/analysis/common.py).

The report's held-out table once rounded it to three significant figures (1,780,000) while the README's table
printed it exactly (1,775,476); both now go through ``fmt_count``."""

from __future__ import annotations

import math
from pathlib import Path

from study.analysis import markdown, report
from study.analysis.common import fmt_cost, fmt_cost_ci, fmt_count
from study.analysis.headline import read_heldout

PUBLISHED = Path(__file__).resolve().parents[1] / "docs" / "results" / "verdict-5x2-160"


def test_a_parameter_count_is_exact_and_other_costs_keep_three_significant_figures():
    assert fmt_count(1_900_660) == "1,900,660"
    assert fmt_count(1775476.0000000016) == "1,775,476"  # a mean over folds of one count, as headline.parquet holds it
    assert fmt_count(95_000.0) == "95,000" and fmt_count(math.nan) == "—" and fmt_count(None) == "—"
    assert fmt_cost("cost.params", 1_900_660.0) == "1,900,660"
    assert fmt_cost("eff.params_total", 1_900_660.0) == "1,900,660"
    assert fmt_cost("cost.train_step_ms", 1_946.2) == "1,950"
    # a count has no interval when every chosen configuration has the same size; it shows one where they differ
    assert fmt_cost_ci("eff.params_total", 1_900_660.0, 0.0) == "1,900,660"
    assert fmt_cost_ci("eff.params_total", 1_900_660.0, 12_345.4) == "1,900,660 ± 12,345"
    assert fmt_cost_ci("time.train_s", 123.456, 4.56) == "123 ± 4.6"


def test_the_report_and_the_markdown_tables_show_the_same_parameter_counts():
    held = read_heldout(PUBLISHED)
    assert held is not None
    in_report = [cell.split(" (×")[0] for cell in report._heldout_table(held, {})["parameters"]]
    in_markdown = markdown.headline_table(PUBLISHED)
    assert in_report == ["1,775,476", "2,065,364", "1,775,476"]  # shared/gradnorm, dual, shared/equal
    assert all(f"| {count} |" in in_markdown for count in in_report)
