"""How an interval over outer folds is widened, and why: the Nadeau–Bengio corrected resampled t.

The K outer folds of a ``--folds K`` study are not K independent experiments: any two folds' development sets
share K − 2 of their K − 1 folds of patients, so their scores move together and the plain Student-t interval
over the folds (variance s² / K) is too narrow. Nadeau & Bengio ("Inference for the Generalization Error",
Machine Learning 52, 2003) bound that correlation by ρ = n_test / n_train and widen the variance to
s² (1/K + n_test / n_train); Bouckaert & Frank (PAKDD 2004) call it the corrected resampled t and show it
keeps the nominal error rate where the plain one does not. The interval is then mean ± t_{K−1} · s · √(1/K + ρ)
(study/analysis/stats.py: ``mean_ci``).

**n_test / n_train in patients.** The patient is the unit the folds deal out and the unit of independence
(frames of one patient are near-copies of each other), so ρ counts patients: for fold k, n_test is its
patients and n_train the other folds' patients — all of its development patients, the inner validation
patients included, because the procedure being evaluated (train, choose the epoch on an inner split) is
handed all of them. ρ is the mean over the folds (folds.parquet); with equal folds it is 1 / (K − 1): 0.25 for
5 folds, which widens the half-width by √((1/5 + 1/4) / (1/5)) = 1.5.

Seeds on one split (no folds) are not corrected: every seed trains on the same patients and is scored on
the same test patients, so the interval is over training randomness only (and says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

NADEAU_BENGIO = "nadeau-bengio"
NONE = "none"


@dataclass(frozen=True)
class Correction:
    """The correction an interval got: ``name`` (NADEAU_BENGIO or NONE) and its ρ = n_test / n_train (0: none)."""

    name: str
    test_train_ratio: float

    def describe(self) -> str:
        if self.name == NONE:
            return "no correction (independent pairs)"
        return (f"Nadeau–Bengio corrected resampled t: variance × (1/K + n_test/n_train), n_test/n_train = "
                f"{self.test_train_ratio:.3f} in patients")


UNCORRECTED = Correction(NONE, 0.0)


def fold_correction(folds: pd.DataFrame) -> Correction:
    """The correction for a folds study from folds.parquet (one row per patient: ``patient``, ``fold``):
    ρ = the mean over folds of (its patients) / (every other fold's patients)."""
    sizes = folds.groupby("fold")["patient"].nunique()
    total = int(sizes.sum())
    if len(sizes) < 2:
        return UNCORRECTED
    ratios = [n / (total - n) for n in sizes]
    return Correction(NADEAU_BENGIO, float(sum(ratios) / len(ratios)))


def folds_without_table(k: int) -> Correction:
    """The correction of K equal folds, ρ = 1 / (K − 1): for a folds study whose folds.parquet is missing."""
    return Correction(NADEAU_BENGIO, 1.0 / (k - 1)) if k >= 2 else UNCORRECTED
