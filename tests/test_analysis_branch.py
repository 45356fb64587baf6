"""The report's "where to branch" figure: trials placed at their split, old rows read as fully shared."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study.analysis.figures_branch import branch_figure, split_of
from study.analysis.loading import Study, prepare_trials


def trial(tid: str, arch: str = "shared", **cols) -> dict:
    return {"trial_id": tid, "arch": arch, "balancer.name": "gradnorm" if arch == "shared" else "equal",
            "status": "finished", "model.cls_level": "p4", "data.batch": 16, **cols}


def study_of(rows: list[dict], tmp_path) -> Study:
    return Study(path=tmp_path, trials=prepare_trials(pd.DataFrame(rows)),
                 epochs=pd.DataFrame(columns=["trial_id", "epoch"]))


def test_split_of_reads_the_record_then_the_config_then_the_default() -> None:
    rows = pd.DataFrame([
        trial("a", **{"model.shared_stages": 2, "eff.shared_units": 2.0}),
        trial("b", **{"model.shared_stages": -1, "eff.shared_units": math.nan}),  # a row before eff.shared_units
        trial("c", **{"model.shared_stages": -1, "model.cls_level": "p5"}),
        trial("d", "dual", **{"model.shared_stages": -1, "eff.shared_units": 0.0}),
    ])
    assert split_of(rows).iloc[:3].tolist() == [2.0, 4.0, 6.0] and math.isnan(split_of(rows).iloc[3])
    old = pd.DataFrame([trial("e")])  # a study from before the key: no column at all
    assert split_of(old).tolist() == [4.0]


def test_branch_figure_needs_two_splits_and_draws_means_per_split(tmp_path) -> None:
    metrics = {"best.val.map50": 0.5, "best.val.view_accuracy": 0.7, "at_best.grad.cosine": 0.1,
               "eff.params_total": 1e6, "eff.gflops": 0.1, "throughput.img_per_s": 32.0}
    one = [trial("a", **{"model.shared_stages": -1, **metrics})]
    assert branch_figure(study_of(one, tmp_path), []) is None
    rows = [trial(t, **{"model.shared_stages": k, **metrics, "best.val.map50": m})
            for t, k, m in (("a", 0, 0.2), ("b", 0, 0.4), ("c", 2, 0.5), ("d", -1, 0.6))]
    fig = branch_figure(study_of(rows, tmp_path), [])
    means = [tr for tr in fig.data if tr.name == "mean per split"]
    assert len(means) == 6  # one per panel
    assert list(means[0].x) == [0.0, 2.0, 4.0] and list(means[0].y) == pytest.approx([0.3, 0.5, 0.6])
    assert list(means[5].y) == [0.5, 0.5, 0.5]  # step seconds: batch 16 / 32 images per second
