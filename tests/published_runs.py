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
    """One published ``--folds`` run: its folder's name, its methods, the seeds each trained per fold, the
    references its verdict compares every method against (``--against``; none: every pair), and the run whose
    patient folds it promised to reuse (``same_folds_as``), if any."""

    name: str
    methods: tuple[str, ...]
    seeds: int
    folds: int = 5
    against: tuple[str, ...] = ()
    same_folds_as: str | None = None

    @property
    def pairs(self) -> set[frozenset[str]]:
        """The verdict's planned pairs, unordered."""
        return {frozenset((a, b)) for i, a in enumerate(self.methods) for b in self.methods[i + 1:]
                if not self.against or a in self.against or b in self.against}

    @property
    def folder(self) -> Path:
        return RESULTS / self.name


RUNS = (
    PublishedRun("verdict-5x2-160", ("shared/gradnorm", "shared/equal", "dual"), seeds=2),
    PublishedRun("balancers-5x1-160", ("shared/equal", "shared/gradnorm", "shared/upgrad", "shared/aligned_mtl",
                                       "shared/nash_mtl", "shared/famo", "shared/rlw", "dual"), seeds=1,
                 against=("shared/gradnorm", "shared/equal"), same_folds_as="verdict-5x2-160"),
    PublishedRun("searched-5x8-160", ("shared/gradnorm", "shared/static", "dual"), seeds=2,
                 same_folds_as="verdict-5x2-160"),
)


def each_run(test):
    """Parametrize ``test`` over the published runs (argument ``run``), by name."""
    return pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])(test)
