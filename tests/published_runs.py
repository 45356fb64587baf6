"""The held-out runs the project publishes under docs/results/ and quotes on its pages: each one's name and the
shape a complete run of its command has, so one set of tests holds every published run to its text and to a
recomputation (tests/test_readme_results.py, tests/test_results_recomputed.py, tests/test_publish.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


@dataclass(frozen=True)
class PublishedRun:
    """One published ``--folds`` run: its folder's name, its methods and the seeds each trained per fold."""

    name: str
    methods: tuple[str, ...]
    seeds: int
    folds: int = 5

    @property
    def folder(self) -> Path:
        return RESULTS / self.name


RUNS = (
    PublishedRun("verdict-5x2-160", ("shared/gradnorm", "shared/equal", "dual"), seeds=2),
)


def each_run(test):
    """Parametrize ``test`` over the published runs (argument ``run``), by name."""
    return pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])(test)
