"""``--resume`` checks what it resumes (study/tuning/resume.py) against the manifest a study writes when it begins."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from study.errors import UsageError
from study.store.manifest import write_manifest
from study.tuning.resume import check_resume
from study.tuning.settings import StudySettings

CONFIG = {"train.epochs": 1, "train.seed": 0, "data.split_seed": 0, "data.split": "patient", "data.source": "synthetic",
          "data.folds": 3, "data.fold": 0, "data.imgsz": 64}


def began(tmp_path, **changes) -> StudySettings:
    s = StudySettings(space="compare", samples=0, epochs=1, folds=3, seeds=2, repeat_best=1, test=True,
                      methods=["shared/gradnorm", "dual"], config=dict(CONFIG), **changes)
    write_manifest(tmp_path, s, {}, "fingerprint-1", time.time(), finished=False)
    return s


def refused(tmp_path, s: StudySettings, fingerprint: str | None = None) -> str:
    with pytest.raises(UsageError) as err:
        check_resume(tmp_path, s, fingerprint)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"--resume {tmp_path.name}: ")
    return message


def test_a_resume_with_another_seed_folds_data_or_set_is_refused_naming_the_flag_and_both_values(tmp_path):
    s = began(tmp_path)
    seed = dataclasses.replace(s, seed=1, config={**CONFIG, "train.seed": 1, "data.split_seed": 1})
    message = refused(tmp_path, seed)
    assert "--seed 0 when it began, 1 now" in message and message.count("--seed") == 1  # one flag, said once
    folds = dataclasses.replace(s, folds=5, config={**CONFIG, "data.folds": 5})
    assert "--folds 3 when it began, 5 now" in refused(tmp_path, folds)
    data = dataclasses.replace(s, config={**CONFIG, "data.source": "/d/data.yaml"})
    assert "--data synthetic when it began, /d/data.yaml now" in refused(tmp_path, data)
    extra = dataclasses.replace(s, config={**CONFIG, "optim.lr": 0.01})
    assert "--set optim.lr (not given) when it began, 0.01 now" in refused(tmp_path, extra)
    methods = dataclasses.replace(s, methods=["dual"])
    assert "--methods shared/gradnorm,dual when it began, dual now" in refused(tmp_path, methods)
    gpu = dataclasses.replace(s, gpus_per_trial=0.5)
    assert "--gpus-per-trial 0.0 when it began, 0.5 now" in refused(tmp_path, gpu)
    # the same data read again, its content changed
    assert "(the data set changed)" in refused(tmp_path, s, "fingerprint-2")


def test_flags_that_cannot_change_a_result_stay_free(tmp_path):
    s = began(tmp_path)
    free = dataclasses.replace(s, max_concurrent=8, cpus_per_trial=2.0, storage="elsewhere", address="127.0.0.1:6379",
                               dashboard_port=8300, resume=True, argv=["--resume"], config={**CONFIG, "data.fold": 2})
    check_resume(tmp_path, free, "fingerprint-1")


def test_a_study_from_before_the_split_seed_was_recorded_resumes_with_its_seed(tmp_path, capsys):
    s = began(tmp_path, seed=7)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["settings"]["config"]["data.split_seed"]  # as a study of the previous version wrote it
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    check_resume(tmp_path, dataclasses.replace(s, config={**CONFIG, "data.split_seed": 7}))
    assert "--seed 7 when it began, 8 now" in refused(tmp_path, dataclasses.replace(s, seed=8, config={
        **CONFIG, "data.split_seed": 8}))
    # no manifest at all: one warning, and the resume goes on
    (tmp_path / "manifest.json").unlink()
    check_resume(tmp_path, s)
    check_resume(tmp_path, s, "fingerprint-1")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: --resume: ")


def test_a_study_without_reruns_may_add_them_but_reruns_once_begun_stay_as_they_were(tmp_path):
    searched = CONFIG | {"data.folds": 0, "data.split": "folders"}
    s = StudySettings(space="gradnorm", samples=6, epochs=1, config=dict(searched))  # repeat_best 0, no folds
    write_manifest(tmp_path, s, {}, "fingerprint-1", time.time(), finished=False)
    check_resume(tmp_path, dataclasses.replace(s, repeat_best=1, seeds=1), "fingerprint-1")  # adds a re-run phase
    with_reruns = began(tmp_path / "b")  # --repeat-best 1 --seeds 2 --folds 3: its re-runs may have begun
    message = refused(tmp_path / "b", dataclasses.replace(with_reruns, seeds=3))
    assert "--seeds 2 when it began, 3 now" in message
