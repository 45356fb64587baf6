"""One independent search per method (study/tuning/searchers.py), driven directly as Tune would drive it.

No Ray cluster: the searcher is called in Tune's order (suggest, on_trial_result per epoch,
on_trial_complete), sequentially, with a deterministic score of the config standing in for training.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna
import pytest

from search_spaces import registry
from study.tuning.searchers import PerMethodSearch
from trainables.config import TrialConfig

BASE = TrialConfig.from_partial({"train.epochs": 2}).to_flat()
OBJECTIVE = [("val.objective", "max")]
GRADNORM = {"arch": "shared", "balancer.name": "gradnorm"}
DUAL = {"arch": "dual", "balancer.name": "equal"}


def score(config: dict[str, Any], epoch: int) -> float:
    """A deterministic stand-in for a trial's val.objective: best near lr = 3e-3, epoch 1 above epoch 2."""
    return 1.0 / (1.0 + abs(math.log(config["optim.lr"] / 3e-3))) - 0.1 * (epoch - 1)


def drive(searcher: PerMethodSearch, n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` trials, one after the other: suggest, two epoch results, complete. Returns the configs."""
    configs = []
    for i in range(start, start + n):
        tid = f"trial{i:03d}"
        config = searcher.suggest(tid)
        for epoch in (1, 2):
            searcher.on_trial_result(tid, {"epoch": epoch, "val.objective": score(config, epoch)})
        searcher.on_trial_complete(tid, {"epoch": 2, "val.objective": score(config, 2)})
        configs.append(config)
    return configs


def of_method(configs: list[dict[str, Any]], method: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in configs if c["arch"] == method["arch"] and c["balancer.name"] == method["balancer.name"]]


def test_a_methods_suggestions_do_not_depend_on_the_other_methods():
    """Same seed: GradNorm's configurations alone, with one other method, and with all of them are identical."""
    per_method = 12  # past TPE's start-up trials (3 of 12), so the model-based suggestions are compared too
    everyone = registry.methods("compare")
    runs = {}
    for label, methods in (("alone", [GRADNORM]), ("pair", [GRADNORM, DUAL]), ("all", everyone)):
        searcher = PerMethodSearch("compare", BASE, OBJECTIVE, per_method * len(methods), seed=5, methods=methods)
        runs[label] = of_method(drive(searcher, per_method * len(methods)), GRADNORM)
    assert len(runs["alone"]) == per_method
    assert runs["alone"] == runs["pair"] == runs["all"]
    # and the searches really search: the suggestions differ from trial to trial
    assert len({c["balancer.alpha"] for c in runs["all"]}) == per_method


def test_every_method_gets_the_same_number_of_trials_and_its_own_study():
    methods = registry.methods("compare")
    searcher = PerMethodSearch("compare", BASE, OBJECTIVE, 2 * len(methods), seed=0)
    configs = drive(searcher, 2 * len(methods))
    for method, study in zip(methods, searcher.studies, strict=True):
        assert len(of_method(configs, method)) == 2
        assert study.study_name == registry.method_name(method["arch"], method["balancer.name"])
        assert len(study.trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # every method with a view head searches its learning rate, det_only has none: conditional sub-spaces
    # (studies by name, not position: a new balancer file is a new method in the list)
    studies = {s.study_name: s for s in searcher.studies}
    assert all("optim.cls_lr" in t.params for t in studies["dual"].trials)
    assert all("optim.cls_lr" in t.params for t in studies["shared/gradnorm"].trials)
    assert not any("optim.cls_lr" in t.params for t in studies["det_only"].trials)


def test_optuna_is_told_the_best_epoch_not_the_last():
    searcher = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 2, seed=0)
    drive(searcher, 1)
    (trial,) = searcher.studies[0].trials
    config = {"optim.lr": trial.params["optim.lr"]}
    assert trial.value == pytest.approx(score(config, 1)) and trial.value > score(config, 2)
    assert trial.user_attrs["best_epoch"] == 1 and trial.user_attrs["tune_trial_id"] == "trial000"
    assert trial.intermediate_values == {1: pytest.approx(score(config, 1)), 2: pytest.approx(score(config, 2))}


def test_a_trial_without_a_validated_epoch_is_a_failed_optuna_trial():
    searcher = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 1, seed=0)
    searcher.suggest("t")
    searcher.on_trial_result("t", {"epoch": 1, "val.objective": math.nan, "status": "diverged"})
    searcher.on_trial_complete("t", {"epoch": 1, "val.objective": math.nan})
    assert searcher.studies[0].trials[0].state == optuna.trial.TrialState.FAIL


def test_a_trial_the_scheduler_stopped_is_pruned_with_its_intermediate_values():
    """ASHA stops a trial after epoch 1 of 2: Optuna records PRUNED (as its own pruning would), not COMPLETE."""
    searcher = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 2, seed=0)
    searcher.suggest("stopped")
    searcher.on_trial_result("stopped", {"epoch": 1, "val.objective": 0.3, "status": "running"})
    searcher.on_trial_complete("stopped", {"epoch": 1, "val.objective": 0.3, "status": "running"})
    searcher.suggest("full")
    for epoch, status in ((1, "running"), (2, "finished")):
        searcher.on_trial_result("full", {"epoch": epoch, "val.objective": 0.2 * epoch, "status": status})
    searcher.on_trial_complete("full", {"epoch": 2, "val.objective": 0.4, "status": "finished"})
    stopped, full = searcher.studies[0].trials
    assert stopped.state == optuna.trial.TrialState.PRUNED and stopped.intermediate_values == {1: 0.3}
    assert full.state == optuna.trial.TrialState.COMPLETE and full.value == pytest.approx(0.4)


@pytest.mark.parametrize(("per_method", "startup"), [(1, 1), (4, 1), (8, 2), (20, 5), (40, 10), (100, 10)])
def test_tpe_runs_after_a_quarter_of_random_start_up_trials(per_method, startup):
    searcher = PerMethodSearch("gradnorm", BASE, OBJECTIVE, per_method, seed=0)
    assert searcher.studies[0].sampler._n_startup_trials == startup
    assert searcher.plan().endswith(f"{startup} random start-up, {per_method - startup} TPE")


def test_a_cost_objective_is_the_whole_trials_as_in_trials_parquet():
    """Multi-objective: the score at the best epoch, the training seconds of the whole trial (the column
    ``time.train_s`` of trials.parquet, its last epoch's) — one definition for Optuna and the Parquet row."""
    from study.store.trials import trial_row

    objectives = [("val.objective", "max"), ("time.train_s", "min")]
    searcher = PerMethodSearch("gradnorm", BASE, objectives, 1, seed=0)
    config = searcher.suggest("t")
    epochs = [{"epoch": 1, "val.objective": 0.5, "time.train_s": 10.0, "status": "running"},
              {"epoch": 2, "val.objective": 0.4, "time.train_s": 20.0, "status": "finished"}]
    for e in epochs:
        searcher.on_trial_result("t", e)
    searcher.on_trial_complete("t", epochs[-1])
    (trial,) = searcher.studies[0].trials
    row = trial_row("t", "gradnorm", config, epochs, "finished")
    assert trial.values == [row["best.val.objective"], row["time.train_s"]] == [0.5, 20.0]


def test_save_and_restore_continue_the_same_searches(tmp_path):
    """What --resume does: a searcher restored from its snapshot suggests what an uninterrupted one would."""
    methods = registry.methods("compare")[:3]
    db = f"sqlite:///{tmp_path / 'optuna.db'}"
    straight = PerMethodSearch("compare", BASE, OBJECTIVE, 24, seed=1, methods=methods)
    expected = drive(straight, 24)

    first = PerMethodSearch("compare", BASE, OBJECTIVE, 24, seed=1, storage=db, methods=methods)
    got = drive(first, 14)
    first.save(str(tmp_path / "searcher.pkl"))
    second = PerMethodSearch("compare", BASE, OBJECTIVE, 24, seed=1, storage=db, methods=methods)
    second.restore(str(tmp_path / "searcher.pkl"))
    got += drive(second, 10, start=14)
    assert got == expected
    stored = optuna.storages.RDBStorage(db)
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(stored)) == \
        sorted(registry.method_name(m["arch"], m["balancer.name"]) for m in methods)
    assert all(len(optuna.load_study(study_name=s.study_name, storage=stored).trials) == 8
               for s in optuna.get_all_study_summaries(stored))


def test_restore_fails_optuna_trials_orphaned_by_a_killed_driver(tmp_path):
    db = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 3, seed=0, storage=db)
    drive(searcher, 1)
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("lost")  # asked after the snapshot, then the driver dies
    restored = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 3, seed=0, storage=db)
    restored.restore(str(tmp_path / "searcher.pkl"))
    states = [t.state for t in restored.studies[0].trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]


def test_restore_ignores_a_trial_optuna_finished_after_the_snapshot(tmp_path):
    """The driver told Optuna a trial's result after its last searcher snapshot, then was killed; Tune
    resumes that trial (its own state still had it running) and reports its epochs again. The restored
    searcher leaves the finished Optuna trial as it was told, and does not fail the resumed study."""
    db = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 3, seed=0, storage=db)
    config = searcher.suggest("t")
    searcher.on_trial_result("t", {"epoch": 1, "val.objective": score(config, 1)})
    searcher.save(str(tmp_path / "searcher.pkl"))  # the snapshot: "t" is running
    searcher.on_trial_result("t", {"epoch": 2, "val.objective": score(config, 2)})
    searcher.on_trial_complete("t", {"epoch": 2, "val.objective": score(config, 2)})  # told, then killed
    told = searcher.studies[0].trials[0].value

    restored = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 3, seed=0, storage=db)
    restored.restore(str(tmp_path / "searcher.pkl"))
    for epoch in (2, 3):  # Tune re-runs "t" from its checkpoint
        restored.on_trial_result("t", {"epoch": epoch, "val.objective": score(config, epoch)})
    restored.on_trial_complete("t", {"epoch": 3, "val.objective": score(config, 3)})
    (trial,) = restored.studies[0].trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == told
    assert set(trial.intermediate_values) == {1, 2}
    drive(restored, 1, start=1)  # and the search goes on
    assert [t.state for t in restored.studies[0].trials] == [optuna.trial.TrialState.COMPLETE] * 2


def test_importance_reads_each_methods_study_from_optuna_db(tmp_path):
    """The report's importance can come straight from optuna.db: one result per method's Optuna study."""
    from study.analysis.importance import storage_importances

    methods = [GRADNORM, {"arch": "dual", "balancer.name": "equal"}]
    searcher = PerMethodSearch("compare", BASE, OBJECTIVE, 12, seed=0, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                               methods=methods)
    drive(searcher, 12)
    found = storage_importances(tmp_path)
    assert set(found) == {"shared/gradnorm", "dual"}
    for name, imp in found.items():
        assert imp.n_trials == 6 and not imp.note, (name, imp.note)
        assert sum(imp.values.values()) == pytest.approx(1.0)
    assert set(found["dual"].values) == {"optim.lr", "optim.cls_lr"}
    assert "balancer.alpha" in found["shared/gradnorm"].values
    assert storage_importances(tmp_path / "nowhere") == {}


def test_report_shows_each_methods_importance_from_optuna_db(tmp_path):
    """The report wires storage_importances in: one importance figure per multi-task method, titled with it."""
    from study.analysis.loading import load_study
    from study.analysis.report import build_report
    from tests.test_analysis_helpers import write_study

    methods = [GRADNORM, {"arch": "dual", "balancer.name": "equal"}]
    searcher = PerMethodSearch("compare", BASE, OBJECTIVE, 12, seed=0, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                               methods=methods)
    drive(searcher, 12)
    write_study(tmp_path)  # the hand-made trials.parquet of several methods: the cross-method view stays too
    figs = build_report(load_study(tmp_path)).figures
    titles = [f.layout.title.text for k, f in figs.items() if k.startswith("importance")]
    assert len(titles) == 3, titles  # across methods, within shared/gradnorm, within dual
    assert sum("within shared/gradnorm, from its Optuna study in optuna.db" in t for t in titles) == 1
    assert sum("within dual" in t for t in titles) == 1


@pytest.mark.parametrize(("objectives", "named"), [
    (OBJECTIVE, ["best.val.objective"]),
    ([("val.objective", "max"), ("time.train_s", "min")], ["best.val.objective", "time.train_s"]),
])
def test_each_optuna_study_names_its_objectives_in_optuna_db(tmp_path, objectives, named):
    """optuna-dashboard showed "Objective 0": every method's study in optuna.db names its values by the
    trials.parquet column that holds them, read back here from the file by a fresh storage."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    PerMethodSearch("compare", BASE, objectives, 2, seed=0, storage=url, methods=[GRADNORM, DUAL])
    stored = {s.study_name: optuna.load_study(study_name=s.study_name, storage=url).metric_names
              for s in optuna.get_all_study_summaries(url)}
    assert stored == {"shared/gradnorm": named, "dual": named}


def test_a_trial_resumed_after_ctrl_c_reports_its_last_epoch_again_without_a_warning(tmp_path):
    """Ctrl-C stopped a trial after its epoch 1 reached Optuna and the snapshot; on --resume Tune runs epoch 1
    again from its checkpoint, and Optuna, which keeps the first value, said "The reported value is ignored"."""
    db = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 1, seed=0, storage=db)
    config = searcher.suggest("t")
    searcher.on_trial_result("t", {"epoch": 1, "val.objective": score(config, 1)})
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = PerMethodSearch("gradnorm", BASE, OBJECTIVE, 1, seed=0, storage=db)
    restored.restore(str(tmp_path / "searcher.pkl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        restored.on_trial_result("t", {"epoch": 1, "val.objective": score(config, 1)})
    restored.on_trial_complete("t", {"epoch": 1, "val.objective": score(config, 1)})
    (trial,) = restored.studies[0].trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.intermediate_values == {1: score(config, 1)}
