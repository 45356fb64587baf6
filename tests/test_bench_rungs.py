"""``python -m study.bench rungs``: Spearman's ρ between a trial's objective at a rung and its best, by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study.benchmarks.rungs import earliest_rung, main, rung_correlations, spearman


def test_spearman_by_hand():
    x = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x * 10) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # ranks 1 2 3 4 against 1 3 2 4: Σd² = 2, ρ = 1 − 6·2 / (4·15) = 0.8
    assert spearman(x, pd.Series([0.1, 0.3, 0.2, 0.4])) == pytest.approx(0.8)
    assert math.isnan(spearman(x, pd.Series([1.0, 1.0, 1.0, 1.0])))  # a constant ranks nothing
    assert math.isnan(spearman(x[:2], x[:2]))  # two trials: no correlation worth a number


def epochs_table() -> pd.DataFrame:
    """Two methods of 4 trials over 3 epochs. Method a: epoch 1 ranks the trials backwards (ρ = −1), epoch 2
    ranks them as their best with one swap (ρ = 0.8), epoch 3 is their best (ρ = 1). Method b: every epoch
    ranks as the best."""
    rows = []
    a = {"a1": (0.4, 0.1, 0.5), "a2": (0.3, 0.3, 0.6), "a3": (0.2, 0.2, 0.7), "a4": (0.1, 0.4, 0.8)}
    b = {f"b{i}": (0.1 * i, 0.2 * i, 0.3 * i) for i in range(1, 5)}
    for trial, values in {**a, **b}.items():
        for epoch, value in enumerate(values, start=1):
            rows.append({"trial_id": trial, "epoch": epoch, "val.objective": value})
    return pd.DataFrame(rows)


def test_rung_correlations_and_the_earliest_rung_that_holds():
    methods = pd.Series({**{f"a{i}": "shared/gradnorm" for i in range(1, 5)}, **{f"b{i}": "dual" for i in range(1, 5)}})
    table = rung_correlations(epochs_table(), methods, (1, 2, 3, 9))  # epoch 9 was never trained: left out
    rho = {(r["method"], r["rung"]): r["rho"] for r in table.to_dict("records")}
    assert rho[("shared/gradnorm", 1)] == pytest.approx(-1.0)
    assert rho[("shared/gradnorm", 2)] == pytest.approx(0.8)
    assert rho[("shared/gradnorm", 3)] == pytest.approx(1.0)
    assert all(rho[("dual", e)] == pytest.approx(1.0) for e in (1, 2, 3))
    assert set(table[table["method"] != "(all methods)"]["n_trials"]) == {4} and 9 not in set(table["rung"])
    # all 8 trials together at epoch 3 (their best): ρ = 1; the row does not decide the rung
    assert rho[("(all methods)", 3)] == pytest.approx(1.0)
    assert earliest_rung(table, 0.8) == 2 and earliest_rung(table, 0.9) == 3
    assert earliest_rung(table[table["rung"] == 1], 0.8) is None
    # best so far: method a's running best at epoch 2 is 0.4, 0.3, 0.2, 0.4 (ties averaged) against its best
    # 0.5..0.8: ranks 3.5, 2, 1, 3.5 vs 1, 2, 3, 4; deviations (1, −0.5, −1.5, 1) and (−1.5, −0.5, 0.5, 1.5):
    # ρ = −0.5 / √(4.5 · 5) (Pearson's r of the ranks, by hand); at the rung itself it was 0.8
    so_far = rung_correlations(epochs_table(), methods, (2,), best_so_far=True)
    assert so_far.set_index("method").loc["shared/gradnorm", "rho"] == pytest.approx(-0.5 / math.sqrt(22.5))


def test_the_command_reads_a_study_folder(tmp_path, capsys):
    epochs = epochs_table()
    trials = pd.DataFrame({"trial_id": [f"a{i}" for i in range(1, 5)] + [f"b{i}" for i in range(1, 5)],
                           "arch": ["shared"] * 4 + ["dual"] * 4, "balancer.name": ["gradnorm"] * 4 + ["equal"] * 4,
                           "status": "finished", "repeat_of": ""})
    trials.to_parquet(tmp_path / "trials.parquet")
    epochs.to_parquet(tmp_path / "epochs.parquet")
    assert main([str(tmp_path), "--at", "1,2,3"]) == 0
    out = capsys.readouterr().out
    assert "| shared/gradnorm (4) | -1.00 | 0.80 | 1.00 |" in out
    assert out.strip().endswith("epoch 2")


def test_docs_tables_are_what_the_committed_pilot_holds():
    """docs/benchmarks.md's two tables under "ASHA rungs on real patients" are the bench's output on the committed
    pilot (docs/results/pilot38-fifo): the text cannot drift from the files."""
    from pathlib import Path

    from study.analysis.loading import load_study
    from study.benchmarks.rungs import DEFAULT_RUNGS, markdown

    root = Path(__file__).resolve().parents[1]
    study = load_study(root / "docs" / "results" / "pilot38-fifo")
    trials = study.trials[(~study.trials["is_repeat"]) & (study.trials["status"] == "finished")]
    assert len(trials) == 18 and trials["epochs_run"].eq(30).all()  # FIFO: every trial ran every epoch
    methods = trials.set_index("trial_id")["method"]
    section = (root / "docs" / "benchmarks.md").read_text().split("## ASHA rungs on real patients")[1]
    for so_far in (False, True):
        table = rung_correlations(study.epochs, methods, DEFAULT_RUNGS, best_so_far=so_far)
        assert markdown(table) in section
        assert earliest_rung(table, 0.8) == (20 if so_far else None)
