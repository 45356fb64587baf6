"""The Parquet results: explicit schema, trial summaries from epoch rows, atomic writes."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study.store.trials import epochs_table, row_config, trial_row, trials_table, write_atomic
from trainables.config import TrialConfig

EPOCHS = [
    {"epoch": 1, "step": 4, "status": "running", "val.objective": 0.30, "val.map": 0.1, "val.ap50_AR": 0.5,
     "weight.det": 1.2, "eff.gflops": 0.7, "time.total_s": 3.0},
    {"epoch": 2, "step": 8, "status": "running", "val.objective": 0.50, "val.map": 0.3, "val.ap50_AR": 0.6,
     "weight.det": 1.1, "eff.gflops": 0.7, "time.total_s": 6.0},
    {"epoch": 3, "step": 12, "status": "finished", "val.objective": 0.40, "val.map": 0.2, "val.ap50_AR": math.nan,
     "weight.det": 1.0, "eff.gflops": 0.7, "time.total_s": 9.0},
]


GRADNORM = {"balancer.name": "gradnorm"}


def test_trial_row_takes_best_and_last_epoch():
    cfg = TrialConfig.from_partial(GRADNORM).to_flat()
    row = trial_row("t1", "gradnorm", cfg, EPOCHS, status="finished")
    assert row["best_epoch"] == 2 and row["best.val.map"] == 0.3 and row["last.val.map"] == 0.2
    assert row["last.weight.det"] == 1.0 and row["eff.gflops"] == 0.7 and row["time.total_s"] == 9.0
    assert row["epochs_run"] == 3 and row["balancer.alpha"] == cfg["balancer.alpha"]


def test_trials_table_types_every_hyperparameter(tmp_path):
    cfg = TrialConfig.from_partial(GRADNORM).to_flat()
    table = trials_table([trial_row("t1", "gradnorm", cfg, EPOCHS, status="finished"),
                          trial_row("t2", "gradnorm", cfg, [], status="error", error="boom")])
    schema = table.schema
    assert schema.field("balancer.alpha").type == pa.float64()
    assert schema.field("data.batch").type == pa.int64()
    assert schema.field("data.augment").type == pa.bool_()
    assert schema.field("model.size").type == pa.string()
    write_atomic(table, tmp_path / "trials.parquet")
    df = pd.read_parquet(tmp_path / "trials.parquet")
    assert list(df["trial_id"]) == ["t1", "t2"]
    assert df.loc[1, "error"] == "boom" and pd.isna(df.loc[1, "best.val.map"])


def test_epochs_table_round_trips_and_no_temp_files_left(tmp_path):
    rows = [{"trial_id": "t1", **e} for e in EPOCHS]
    write_atomic(epochs_table(rows), tmp_path / "epochs.parquet")
    write_atomic(epochs_table(rows[:2]), tmp_path / "epochs.parquet")  # overwrite in place
    table = pq.read_table(tmp_path / "epochs.parquet")
    assert table.num_rows == 2 and table.schema.field("epoch").type == pa.int64()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epochs.parquet"]


def test_mixed_balancers_give_the_union_of_their_columns(tmp_path):
    """A balancer's hyperparameters are columns where its trials ran, NaN in the other methods' rows;
    every row still reads back as its trial's config."""
    configs = [TrialConfig.from_partial({"balancer.name": name}) for name in ("equal", "gradnorm", "dwa")]
    rows = [trial_row(f"t{i}", "compare", c.to_flat(), EPOCHS, status="finished") for i, c in enumerate(configs)]
    write_atomic(trials_table(rows), tmp_path / "trials.parquet")
    df = pd.read_parquet(tmp_path / "trials.parquet")
    for key in ("balancer.alpha", "balancer.weight_lr", "balancer.warmup_steps", "balancer.temperature",
                "balancer.dwa_window"):
        assert key in df
    assert "balancer.cagrad_c" not in df  # no cagrad trial, no cagrad column
    assert df["balancer.alpha"].isna().tolist() == [True, False, True]
    assert df["balancer.dwa_window"].isna().tolist() == [True, True, False]
    for (_, row), cfg in zip(df.iterrows(), configs, strict=True):
        flat = {k: row[k] for k in TrialConfig.flat_keys() if k in row}
        assert TrialConfig.from_flat(flat) == cfg
        assert row_config(row) == cfg.to_flat()  # exactly its own keys, no other balancer's NaN column


def test_a_plugin_balancers_own_key_is_a_column(tmp_path):
    """A balancer named by import path declares keys no registered balancer has: they are columns too,
    and the row reads back as its trial's config."""
    name = "tests.balancing_toys:ScaledOthers"
    cfg = TrialConfig.from_partial({"balancer.name": name, "balancer.others": 0.25})
    rows = [trial_row("t1", "custom", cfg.to_flat(), EPOCHS, status="finished"),
            trial_row("t2", "custom", TrialConfig.from_partial(GRADNORM).to_flat(), EPOCHS, status="finished")]
    write_atomic(trials_table(rows), tmp_path / "trials.parquet")
    df = pd.read_parquet(tmp_path / "trials.parquet")
    assert df["balancer.others"].tolist()[0] == 0.25 and pd.isna(df["balancer.others"].tolist()[1])
    # the row's own config (what --repeat-best and the isolated costs re-run) carries the plugin's value
    assert row_config(df.iloc[0])["balancer.others"] == 0.25
    assert TrialConfig.from_flat(row_config(df.iloc[0])) == cfg
