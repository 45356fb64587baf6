"""The metric registry (trainables/metrics/names.py) is the one list: the engine writes only what it
declares, and the recorder's rows and trials.parquet's summary columns follow it."""

from __future__ import annotations

import math

import pytest

from study.store.trials import epoch_row, trial_row, trials_table
from trainables.config import TrialConfig
from trainables.data.loader import load_data
from trainables.engine import failure_metrics, fit
from trainables.metrics import names
from trainables.metrics.names import Metric

TINY = {
    "data.imgsz": 64,
    "data.synthetic_train": 16,
    "data.synthetic_val": 8,
    "data.synthetic_test": 8,
    "data.batch": 8,
    "train.interference_batches": 1,
    "train.epochs": 1,
    "balancer.name": "gradnorm",
}


def test_the_engine_writes_exactly_the_registered_keys():
    cfg = TrialConfig.from_partial(TINY)
    reports = []
    fit(cfg, load_data(cfg.data, seed=0), report=lambda m, s: reports.append(m))
    (metrics,) = reports
    unregistered = [k for k in metrics if names.lookup(k) is None]
    assert not unregistered, f"add these to trainables/metrics/names.py: {unregistered}"
    assert set(names.HEADLINE) <= set(metrics)
    # a two-task shared model writes every key the registry declares: no entry is stale; the clinical group (jet
    # present per valve) is scored where a checkpoint is scored on a split, never per epoch (tests/test_clinical.py)
    written = {names.lookup(k).key for k in metrics}
    per_epoch = {k for k, m in names.REGISTRY.items() if m.group != names.CLINICAL}
    assert written == per_epoch, per_epoch - written
    assert epoch_row(metrics) == metrics  # the recorder keeps the whole epoch dict


def test_an_early_end_reports_every_headline_metric():
    metrics = failure_metrics(3, 0, "error", "boom")
    assert all(math.isnan(metrics[k]) for k in names.HEADLINE)
    assert all(names.lookup(k) is not None for k in metrics)


def test_recorded_and_summarised_columns_follow_the_registry(monkeypatch: pytest.MonkeyPatch):
    epochs = [
        {
            "epoch": e,
            "step": 4 * e,
            "status": "running",
            "val.objective": score,
            "quality.sharpness": 10.0 * e,
            "energy.joules": 5.0 * e,
            "mystery.x": 1.0,
        }
        for e, score in ((1, 0.2), (2, 0.6), (3, 0.4))
    ]
    assert "quality.sharpness" not in epoch_row(epochs[0])  # not registered: not recorded

    monkeypatch.setitem(names.REGISTRY, "quality.sharpness", Metric("quality.sharpness", "val", "sharpness"))
    monkeypatch.setitem(names.REGISTRY, "energy.joules", Metric("energy.joules", "eff", "energy (J)"))
    rows = [epoch_row(e) for e in epochs]
    assert all("quality.sharpness" in r and "energy.joules" in r and "mystery.x" not in r for r in rows)
    row = trial_row("t1", "gradnorm", TrialConfig().to_flat(), rows, status="finished")
    assert row["best.quality.sharpness"] == 20.0 and row["last.quality.sharpness"] == 30.0  # best: epoch 2
    assert row["energy.joules"] == 15.0 and "best.energy.joules" not in row  # static: the last epoch's
    columns = trials_table([row]).schema.names
    assert {"best.quality.sharpness", "last.quality.sharpness", "energy.joules"} <= set(columns)
    assert not [c for c in columns if "mystery" in c]
    assert names.trial_column("quality.sharpness") == "best.quality.sharpness"
    assert names.trial_column("energy.joules") == "energy.joules"


def test_families_and_labels():
    assert names.lookup("val.ap50_AR").key == "val.ap50_<class>"
    assert names.label("val.view_recall_A4C") == "view recall: A4C"
    assert names.lookup("val.unknown") is None and names.label("val.unknown") == "val.unknown"
    assert names.summary("time.train_s") == names.STATIC and names.summary("loss.det") == names.BEST_LAST
    assert names.summary("epoch") == ""
    assert all(names.REGISTRY[k].direction for k in names.HEADLINE)  # every headline is compared one way
