"""A result is pinned to its code and numerics: each sitting of a study records its commit, its uncommitted
changes to project code and its resolved precision (study/store/manifest.py), and a ``--resume`` on other code
or other numerics is refused in one line (study/tuning/resume.py) unless ``--allow-code-change`` lets a code
change through (never a change of numerics).

``code_state`` is tested on a throwaway git repository with real commits; ``check_resume`` against manifests
recorded at another commit (this checkout's own code is what "now" is); one tiny real study is resumed."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from study.cli import run_cli
from study.errors import UsageError
from study.store.manifest import code_state, describe_code, driver_numerics, project_code_state, write_manifest
from study.tuning.resume import check_resume
from study.tuning.settings import StudySettings
from tests.conftest import TINY

OTHER = "0123456789ab" + "0" * 28  # a commit this checkout is not at


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                          cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "study").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "study" / "a.py").write_text("A = 1\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "README.md").write_text("readme\n")
    (root / "docs" / "notes.md").write_text("notes\n")
    (root / ".gitignore").write_text("__pycache__/\n")  # as the project's
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    return root


def test_code_state_names_the_commit_and_only_project_code_counts_as_a_change(repo, tmp_path):
    first = code_state(repo)
    assert first["commit"] == git(repo, "rev-parse", "HEAD") and first["dirty"] is False
    # README and docs/ are not code: neither dirty nor another code hash
    (repo / "README.md").write_text("changed\n")
    (repo / "docs" / "notes.md").write_text("changed\n")
    assert code_state(repo) == first
    # an uncommitted change to code: dirty, another hash; undone, the same code again
    (repo / "study" / "a.py").write_text("A = 2\n")
    dirty = code_state(repo)
    assert dirty["dirty"] is True and dirty["commit"] == first["commit"] and dirty["code"] != first["code"]
    assert code_state(repo) == dirty  # the same dirty tree is the same code
    (repo / "study" / "a.py").write_text("A = 1\n")
    assert code_state(repo) == first
    # a new untracked module is code (pyproject.toml too); __pycache__ is not
    (repo / "study" / "__pycache__").mkdir()
    (repo / "study" / "__pycache__" / "a.cpython-311.py").write_text("x")
    assert code_state(repo) == first
    (repo / "study" / "b.py").write_text("B = 1\n")
    assert code_state(repo)["dirty"] is True and code_state(repo)["code"] != first["code"]
    (repo / "study" / "b.py").unlink()
    # a commit of docs only: another commit, the same code; a commit of code: another code
    git(repo, "commit", "-q", "-am", "docs")
    docs = code_state(repo)
    assert docs["commit"] != first["commit"] and docs["code"] == first["code"] and docs["dirty"] is False
    (repo / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    git(repo, "commit", "-q", "-am", "code")
    assert code_state(repo)["code"] != first["code"]
    # a copy without .git (a Ray job's working directory): no commit, the same hash for the same files
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    bare = code_state(copy)
    assert bare["commit"] == "unknown" and bare["dirty"] is None and bare["code"] == code_state(repo)["code"]
    assert describe_code(bare).endswith("(not a git checkout)")
    assert describe_code({**first, "dirty": True}).startswith(f"commit {first['commit'][:12]} with uncommitted")


CONFIG = {"train.epochs": 1, "train.seed": 0, "data.split_seed": 0, "data.split": "folders",
          "data.source": "synthetic"}


def began(study: Path, base: dict | None = None) -> StudySettings:
    s = StudySettings(space="gradnorm", samples=2, epochs=1, config=dict(CONFIG))
    study.mkdir(parents=True, exist_ok=True)
    write_manifest(study, s, base or {}, "fingerprint-1", time.time(), finished=False)
    return s


def edit(study: Path, change) -> None:
    manifest = json.loads((study / "manifest.json").read_text())
    change(manifest)
    (study / "manifest.json").write_text(json.dumps(manifest))


def refused(study: Path, s: StudySettings, base: dict) -> str:
    with pytest.raises(UsageError) as err:
        check_resume(study, dataclasses.replace(s, resume=True), base=base)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"--resume {study.name}: ")
    return message


def test_each_sitting_records_its_code_and_numerics(tmp_path):
    s = began(tmp_path)
    sitting = json.loads((tmp_path / "manifest.json").read_text())["runs"][-1]
    now = project_code_state()
    assert {k: sitting[k] for k in ("commit", "dirty", "code")} == now
    assert sitting["numerics"] == driver_numerics(s, {}).as_state() and "allow_code_change" not in sitting


def test_a_resume_on_other_code_is_refused_naming_both_commits_unless_allowed(tmp_path, capsys):
    s = began(tmp_path)
    check_resume(tmp_path, dataclasses.replace(s, resume=True), base={})  # the same code: no word
    assert capsys.readouterr().err == ""

    def elsewhere(m):
        m["runs"][-1].update(commit=OTHER, dirty=False, code="f" * 64)
    edit(tmp_path, elsewhere)
    now = describe_code(project_code_state())
    message = refused(tmp_path, s, {})
    assert f"code commit {OTHER[:12]} when it last ran, {now} now" in message
    assert f"git checkout {OTHER[:12]}" in message and "--allow-code-change" in message

    # the flag lets it through: one warning, and the sitting records it; the next resume compares with it
    allowed = dataclasses.replace(s, resume=True, allow_code_change=True, argv=["--resume", "--allow-code-change"])
    check_resume(tmp_path, allowed, base={})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: --resume {tmp_path.name}: --allow-code-change: ")
    assert OTHER[:12] in err
    write_manifest(tmp_path, allowed, {}, "fingerprint-1", time.time(), finished=False)
    runs = json.loads((tmp_path / "manifest.json").read_text())["runs"]
    assert [r.get("allow_code_change", False) for r in runs] == [False, True]
    assert runs[-1]["code"] == project_code_state()["code"]
    check_resume(tmp_path, dataclasses.replace(s, resume=True), base={})
    assert capsys.readouterr().err == ""


def test_other_numerics_are_refused_even_with_the_flag(tmp_path):
    s = began(tmp_path)
    now = driver_numerics(s, {}).as_state()
    other = {"precision": "fp32" if now["precision"] == "bf16" else "bf16", "memory_format": now["memory_format"]}

    def numerics(m):
        m["runs"][-1]["numerics"] = other
        m["compute"]["resolved_on_driver"] = other
    edit(tmp_path, numerics)
    for allow in (False, True):
        message = refused(tmp_path, dataclasses.replace(s, allow_code_change=allow), {})
        assert (f"compute {other['precision']}/{other['memory_format']} when it began, "
                f"{now['precision']}/{now['memory_format']} now") in message
        assert "--allow-code-change does not cover numerics" in message


def test_the_base_config_follows_the_code(tmp_path, capsys):
    # a default the code changed: refused with or without the flag; a key it added: the code change's to allow
    s = began(tmp_path, base={"optim.lr": 0.01})
    for allow in (False, True):
        message = refused(tmp_path, dataclasses.replace(s, allow_code_change=allow), {"optim.lr": 0.02})
        assert "base config optim.lr 0.01 when it began, 0.02 now (a default the code changed)" in message
    added = {"optim.lr": 0.01, "model.new": 3}
    assert "base config keys the code added: model.new" in refused(tmp_path, s, added)
    check_resume(tmp_path, dataclasses.replace(s, resume=True, allow_code_change=True), base=added)
    assert "model.new" in capsys.readouterr().err
    # keys the command sets are the settings' to compare, and the study's own keys are free
    check_resume(tmp_path, dataclasses.replace(s, resume=True), base={"optim.lr": 0.01, "data.fold": 1,
                                                                      "data.test_patients": "abc"})


def test_an_old_manifest_is_compared_on_its_commit_and_warns_once_about_the_rest(tmp_path, capsys):
    s = began(tmp_path)

    def old(commit):
        def change(m):
            for r in m["runs"]:
                for key in ("commit", "dirty", "code", "numerics"):
                    r.pop(key, None)
            m["git_commit"] = commit
            m["compute"].pop("resolved_on_driver", None)
            m.pop("base_config", None)
        return change
    edit(tmp_path, old(OTHER + "-dirty"))
    assert f"code commit {OTHER[:12]} when it began" in refused(tmp_path, s, {})
    edit(tmp_path, old(project_code_state()["commit"] + "-dirty"))
    check_resume(tmp_path, dataclasses.replace(s, resume=True), base={})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: --resume {tmp_path.name}: ")
    assert "its code beyond the commit" in err and "its base config" in err and "precision" in err


def test_a_real_study_resumed_on_other_code(ray_cluster, tmp_path, capsys):
    """A tiny study with a scored re-run: test_runs.parquet says how each re-run computed; a resume after the
    manifest says the study last ran other code is refused and nothing is written; --allow-code-change goes on
    and is recorded."""
    from study.run import main as run_main

    argv = ["--storage", str(tmp_path), "--name", "c", *TINY, "--space", "gradnorm", "--samples", "0",
            "--epochs", "1", "--repeat-best", "1", "--seeds", "1", "--test"]
    assert run_main(argv) == 0
    study = tmp_path / "c"
    runs = pd.read_parquet(study / "test_runs.parquet")
    trials = pd.read_parquet(study / "trials.parquet").set_index("trial_id")
    for column in ("eff.precision", "eff.memory_format"):
        assert list(runs[column]) == list(trials.loc[runs["trial_id"], column])
    assert run_main([*argv, "--resume"]) == 0  # the same code (dirty or not, as it began): no word about it
    assert "--resume" not in capsys.readouterr().err

    edit(study, lambda m: m["runs"][-1].update(commit=OTHER, dirty=False, code="f" * 64))
    before = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}
    assert run_cli(run_main, [*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --resume c: code commit 0123456789ab when it last ran")
    assert {p: p.read_bytes() for p in study.rglob("*") if p.is_file()} == before  # nothing written

    assert run_main([*argv, "--resume", "--allow-code-change"]) == 0
    assert "warning: --resume c: --allow-code-change: code commit 0123456789ab" in capsys.readouterr().err
    sittings = json.loads((study / "manifest.json").read_text())["runs"]
    assert len(sittings) == 3 and sittings[-1]["allow_code_change"] is True
    assert sittings[-1]["code"] == project_code_state()["code"] and sittings[-1]["finished"]
