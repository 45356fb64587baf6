"""ASHA per method: a trial is ranked only against trials of its own method (real Tune trials and ASHA)."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from study.tuning.schedulers import PerMethodASHA

ASHA = {"time_attr": "epoch", "metric": "val.objective", "mode": "max", "max_t": 4, "grace_period": 1,
        "reduction_factor": 2}
# (method, first-epoch objective): cls_only scores view accuracy, det_only mAP — different scales
ARRIVALS = [("cls_only", 0.9), ("cls_only", 0.8), ("det_only", 0.2), ("det_only", 0.1)]


def decisions(scheduler: TrialScheduler) -> list[str]:
    out = []
    for arch, score in ARRIVALS:
        trial = Trial("train_trial", config={"arch": arch, "balancer.name": "equal"}, stub=True)
        scheduler.on_trial_add(None, trial)
        out.append(scheduler.on_trial_result(None, trial, {"epoch": 1, "val.objective": score}))
    return out


def test_each_method_has_its_own_rungs():
    per_method = decisions(PerMethodASHA(["det_only", "cls_only"], **ASHA))
    # the best det_only trial goes on although its mAP is far below any view accuracy; within each
    # method the weaker half of the rung stops
    assert per_method == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.CONTINUE,
                          TrialScheduler.STOP]
    # one ASHA over all methods would have stopped the best det_only trial for a scale it does not share
    assert decisions(ASHAScheduler(**ASHA))[2] == TrialScheduler.STOP
