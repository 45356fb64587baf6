"""``python -m study.bench epoch``: the epoch's pieces are timed on the engine's own run, and the engine is left as
it was; the evaluation comparison tells equal metrics from different ones."""

from __future__ import annotations

import math

import pytest

from study.benchmarks.epoch import PIECES, compare_eval_batches, largest_difference, profile_epochs
from trainables import engine, interference, learner
from trainables.config import TrialConfig
from trainables.data.loader import load_data


def test_largest_difference_by_hand():
    a = {"val.map": 0.5, "val.n_clips": 7, "val.view_accuracy": math.nan, "name": "x", "flag": True}
    assert largest_difference(a, dict(a)) == 0.0  # NaN in both: equal; text and flags are not metrics
    assert largest_difference(a, {**a, "val.map": 0.5001}) == pytest.approx(1e-4)
    assert largest_difference(a, {**a, "val.n_clips": 9}) == 2.0
    assert largest_difference(a, {**a, "val.view_accuracy": 0.7}) == math.inf  # a score where there was none
    assert largest_difference(a, {k: v for k, v in a.items() if k != "val.map"}) == math.inf  # a metric missing


def test_epoch_profile_times_every_piece_and_restores_the_engine():
    cfg = TrialConfig.from_partial({
        "arch": "shared", "balancer.name": "gradnorm", "data.source": "synthetic", "data.imgsz": 64,
        "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_test": 8, "data.batch": 8,
        "train.epochs": 2, "train.interference_batches": 1, "train.bn_recalibration_batches": 1, "train.device": "cpu"})
    data = load_data(cfg.data, seed=0)
    originals = (engine.evaluate, engine.iterate_batches, engine.recalibrate_batchnorm, learner.Learner.step,
                 interference.iterate_batches)
    rows, model = profile_epochs(cfg, data)
    assert (engine.evaluate, engine.iterate_batches, engine.recalibrate_batchnorm, learner.Learner.step,
            interference.iterate_batches) == originals
    by_piece = {r["piece"]: r for r in rows}
    assert list(by_piece) == [*PIECES, "other", "epoch"]
    for piece in PIECES:  # each piece ran in the epoch (eval.forward: what evaluate spent outside the rest)
        assert by_piece[piece]["seconds"] > 0, piece
    epoch = by_piece["epoch"]
    # the pieces do not overlap: together they fit in the epoch's wall time (rounded to 0.1 ms each)
    assert sum(by_piece[p]["seconds"] for p in PIECES) <= epoch["seconds"] + 1e-3
    assert epoch["checkpoint_mib"] > 0 and epoch["static_efficiency"] > 0 and epoch["bn_recal.batches"] > 0
    compare = compare_eval_batches(model, data, cfg, [8, 32], repeats=1)
    assert [r["compare"] for r in compare] == ["eval batch 32 (engine)", "eval batch 8"]
    assert compare[0]["ratio"] == 1.0 and all(isinstance(r["same_metrics"], bool) for r in compare)
