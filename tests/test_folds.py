"""Patient folds (trainables/data/folds.py, study/heldout/folds.py): whole patients, stratified, never seen twice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.run import main as run_main
from tests.conftest import TINY
from trainables.config import ConfigError, TrialConfig
from trainables.data.folds import fold_split, missing_labels, stratified_folds
from trainables.data.loader import load_data


def test_every_label_carried_by_k_patients_lands_in_every_fold():
    # 12 patients: a rare label on exactly 3 of them, a common one on 9; every patient once
    labels = [frozenset({"view:0"} | ({"class:9"} if p in (2, 5, 11) else set())) for p in range(12)]
    labels = [lab | {"view:1"} if p % 4 else lab for p, lab in enumerate(labels)]
    frames = np.full(12, 10)
    for seed in range(5):
        fold = stratified_folds(labels, frames, 3, seed)
        assert sorted(np.bincount(fold, minlength=3)) == [4, 4, 4]  # the fold (patients) is the unit
        assert missing_labels(labels, fold, 3) == {}
        assert sorted(fold[[2, 5, 11]]) == [0, 1, 2]  # the rare label: one carrier per fold
    assert len({tuple(stratified_folds(labels, frames, 3, s)) for s in range(5)}) > 1  # the seed matters
    with pytest.raises(ValueError, match="2 patients cannot fill 3 folds"):
        stratified_folds(labels[:2], frames[:2], 3, 0)


def test_fold_split_keeps_patients_whole_and_each_fold_tests_its_own():
    rng = np.random.default_rng(0)
    groups = np.array([f"p{i // 5:02d}" for i in range(100)])  # 20 patients of 5 frames
    views = rng.integers(0, 3, 100)
    boxes = np.array([[i, i % 4, 0, 0, 1, 1] for i in range(0, 100, 3)], np.float32)
    tested = []
    for fold in range(4):
        parts = fold_split(groups, views, boxes, 4, fold, val_fraction=0.2, seed=3)
        assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(100))
        sets = {k: set(groups[v]) for k, v in parts.items()}
        assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
        tested += sorted(sets["test"])
    assert sorted(tested) == sorted(set(groups))  # each patient is tested in exactly one fold


def test_fold_config_is_checked_and_old_configs_read_as_no_folds():
    with pytest.raises(ConfigError, match=r"set data\.split=patient"):
        TrialConfig.from_partial({"data.folds": 3})
    with pytest.raises(ConfigError, match=r"data.fold=3 must be in \[0, 2\]"):
        TrialConfig.from_partial({"data.folds": 3, "data.fold": 3, "data.split": "patient"})
    stored = {k: v for k, v in TrialConfig().to_flat().items() if k not in ("data.folds", "data.fold")}
    assert TrialConfig.from_flat(stored).data.folds == 0  # a checkpoint from before folds still loads


def test_a_folds_study_scores_every_patient_once_and_resumes_without_new_runs(ray_cluster, tmp_path, capsys):
    argv = ["--storage", str(tmp_path), "--name", "f", *TINY, "--set", "train.bn_recalibration_batches=1",
            "--space", "compare", "--methods", "shared/gradnorm,dual", "--samples", "0", "--epochs", "1",
            "--folds", "2", "--seeds", "1", "--split", "patient"]
    assert run_main(argv) == 0
    out = capsys.readouterr().out
    study = tmp_path / "f"
    assert "paired by outer fold" in out and "shared/gradnorm vs dual (2 folds)" in out

    folds = pd.read_parquet(study / "folds.parquet")
    runs = pd.read_parquet(study / "test_runs.parquet")
    assert folds["patient"].is_unique and set(folds["fold"]) == {0, 1}
    pairs = set(zip(runs["method"], runs["fold"], strict=True))
    assert len(runs) == 4 and pairs == {(m, f) for m in ("shared/gradnorm", "dual") for f in (0, 1)}
    # every trial of fold k trained and chose its epoch without fold k's patients: its config says so, and
    # the patients its checkpoint is scored on are exactly fold k's
    cfg = TrialConfig.from_partial({"data.split": "patient", "data.imgsz": 64,
                                    "data.synthetic_train": 24, "data.synthetic_val": 12, "data.synthetic_test": 12})
    for fold in (0, 1):
        data = load_data(TrialConfig.from_partial({**cfg.to_flat(), "data.folds": 2, "data.fold": fold}).data, seed=0)
        held = set(folds.loc[folds["fold"] == fold, "patient"])
        assert set(data.groups[data.splits["test"]]) == held
        assert not held & set(data.groups[np.concatenate([data.splits["train"], data.splits["val"]])])
        trials = pd.read_parquet(study / f"fold-{fold}" / "trials.parquet")
        assert set(trials["data.fold"]) == {fold} and set(trials["data.folds"]) == {2}
    head = pd.read_parquet(study / "headline.parquet").set_index("method")
    assert (head["n_folds"] == 2).all() and (head["n_seeds"] == 1).all() and (head["n_runs"] == 2).all()
    assert set(head["interval_unit"]) == {"fold"} and not head["split_leaks_patients"].any()
    fold_means = runs.groupby(["method", "fold"])["test.view_accuracy"].mean().groupby("method").mean()
    assert head.loc["dual", "test.view_accuracy.mean"] == pytest.approx(fold_means["dual"])
    verdict = pd.read_parquet(study / "verdict.parquet")
    assert set(verdict.loc[verdict["metric"] == "map50", "n_pairs"]) == {2}

    # files a team can share: the umask decides their mode (not mkstemp's 0600); short trial folder names
    from study.store.atomic import current_umask

    for name in ("folds.parquet", "headline.parquet", "verdict.parquet", "fold-0/trials.parquet"):
        assert (study / name).stat().st_mode & 0o777 == 0o666 & ~current_umask(), name
    trial_dirs = [d for d in (study / "fold-0-repeats").iterdir() if d.is_dir()]
    assert trial_dirs and all(d.name.startswith("trial_") and len(d.name) <= 40 for d in trial_dirs)

    before = {name: pd.read_parquet(study / name) for name in ("test_runs.parquet", "headline.parquet")}
    trials_before = [len(pd.read_parquet(study / f"fold-{k}" / "trials.parquet")) for k in (0, 1)]
    assert run_main([*argv, "--resume"]) == 0
    assert "re-runs scored before (test_runs.parquet) kept as they were" in capsys.readouterr().out
    for name, frame in before.items():
        pd.testing.assert_frame_equal(pd.read_parquet(study / name), frame)
    assert [len(pd.read_parquet(study / f"fold-{k}" / "trials.parquet")) for k in (0, 1)] == trials_before
