"""Patient folds (trainables/data/folds.py, study/heldout/folds.py): whole patients, stratified, never seen twice."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from study.cli import run_cli
from study.evaluate import main as evaluate_main
from study.run import main as run_main
from tests.conftest import SHARED_DATASET as SHARED
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

    # an independent rebuild of each fold's test patients: folds.parquet (dealt once by the driver) and, by hand
    # here, the fingerprint every trial of the fold carries; the frames scored are those patients' frames
    for fold in (0, 1):
        held = sorted(folds.loc[folds["fold"] == fold, "patient"])
        by_hand = hashlib.sha256(("test-patients\n" + "\n".join(held)).encode()).hexdigest()[:16]
        trials = pd.read_parquet(study / f"fold-{fold}" / "trials.parquet")
        assert set(trials["data.test_patients"]) == {by_hand} and set(trials["data.split_seed"]) == {0}
        frames = int(folds.loc[folds["fold"] == fold, "frames"].sum())
        assert set(runs.loc[runs["fold"] == fold, "images"]) == {frames}
    assert set(runs["status"]) == {"finished"} and runs["scored"].all() and (head["n_failed"] == 0).all()

    # a checkpoint moved out of its study is scored on its own patients (no manifest above it), or refused
    moved = tmp_path / "elsewhere" / "checkpoint.pt"
    moved.parent.mkdir()
    one = runs[runs["fold"] == 1].iloc[0]
    shutil.copy(one["checkpoint"], moved)
    code = run_cli(evaluate_main, [str(moved), "--device", "cpu", "--json", str(tmp_path / "moved.json")])
    result = json.loads((tmp_path / "moved.json").read_text())
    assert code == 0 and result["split_seed"] == 0 and result["images"] == one["images"]
    assert result["metrics"]["test.view_accuracy"] == pytest.approx(one["test.view_accuracy"])
    capsys.readouterr()
    assert run_cli(evaluate_main, [str(moved), "--split-seed", "1000", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained with test patients" in err and "it may have trained on them" in err

    files = {p: p.read_bytes() for p in study.rglob("*.parquet")} | {study / "manifest.json":
                                                                     (study / "manifest.json").read_bytes()}
    # a resume that would change what is measured is refused, one line each, before anything runs
    for change, said in ((["--seed", "1"], "--seed 0 when it began, 1 now"),
                         (["--folds", "3"], "--folds 2 when it began, 3 now"),
                         (["--set", "data.synthetic_train=36"], "--set data.synthetic_train 24 when it began, 36 now"),
                         (["--data", str(SHARED)], "--data synthetic when it began")):
        if change[0] == "--data" and not SHARED.exists():
            continue
        assert run_cli(run_main, [*argv, *change, "--resume"]) == 2, change
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: --resume f: ") and said in err, err
    assert {p: p.read_bytes() for p in files} == files  # byte-identical: nothing written

    before = {name: pd.read_parquet(study / name) for name in ("test_runs.parquet", "headline.parquet")}
    trials_before = [len(pd.read_parquet(study / f"fold-{k}" / "trials.parquet")) for k in (0, 1)]
    assert run_main([*argv, "--max-concurrent", "1", "--resume"]) == 0  # a flag that cannot change a result
    assert "2 re-runs scored before (test_runs.parquet) kept unchanged" in capsys.readouterr().out
    for name, frame in before.items():
        pd.testing.assert_frame_equal(pd.read_parquet(study / name), frame)
    assert [len(pd.read_parquet(study / f"fold-{k}" / "trials.parquet")) for k in (0, 1)] == trials_before


def test_every_validation_split_of_the_shared_data_sees_every_view(shared_dataset, capsys, monkeypatch):
    """The inner validation split balances each view's frames (seed 0, 5 folds: fold 3 once validated on one A4C
    frame); a view with fewer than MIN_VAL_FRAMES frames in a fold's validation split is a warning naming both."""
    import dataclasses
    from collections import Counter

    import study.heldout.folds as folds_module
    from study.heldout.folds import MIN_VAL_FRAMES, check_folds

    cfg = TrialConfig.from_partial({"data.source": str(shared_dataset), "data.split": "patient",
                                    "data.imgsz": 64}).data
    data = load_data(cfg, seed=0)
    table = check_folds(data, cfg, 5, 0)
    assert "validation split" not in capsys.readouterr().err
    counts = []
    for fold in range(5):  # counted here from the patients of each fold's validation split
        split = load_data(dataclasses.replace(cfg, folds=5, fold=fold), seed=0)
        val = set(split.groups[split.splits["val"]])
        assert val and not val & set(table.loc[table["fold"] == fold, "patient"])  # development patients only
        per_view = Counter(int(v) for g, v in zip(data.groups, data.views, strict=True) if g in val)
        counts.append([per_view[v] for v in range(data.num_views)])
    assert min(min(c) for c in counts) >= MIN_VAL_FRAMES
    monkeypatch.setattr(folds_module, "MIN_VAL_FRAMES", 30)
    capsys.readouterr()  # (the loads above said which files they skip)
    check_folds(data, cfg, 5, 0)
    err = capsys.readouterr().err
    expected = [(f, v, n) for f, c in enumerate(counts) for v, n in enumerate(c) if n < 30]
    assert expected and err.count("\n") == len(expected)
    for f, v, n in expected:
        assert (f"warning: --folds 5: fold {f}'s validation split holds {n} frames of view "
                f"{data.view_names[v]!r} (fewer than 30)") in err


def test_a_folds_study_is_a_loop_over_the_phases_and_the_imports_go_one_way():
    """study/heldout/folds.py uses study/tuning/phases.py; phases imports nothing of folds (the command chooses)."""
    import ast
    from pathlib import Path

    def imports(module: str) -> set[str]:
        tree = ast.parse(Path(__import__(module, fromlist=["_"]).__file__).read_text())
        return ({n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} |
                {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names})

    assert "study.tuning.phases" in imports("study.heldout.folds")
    assert not {m for m in imports("study.tuning.phases") if m.startswith("study.heldout.folds")}
    assert "study.heldout.folds" in imports("study.run") and "study.tuning.phases" in imports("study.run")
