"""A start that fails before any trial runs leaves nothing behind: the same ``--name`` runs again without
``--resume`` (study/store/folder.py: ``discard_unstarted``). Once a phase began, the folder is a study to resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from study.store import folder
from study.store.folder import discard_unstarted, mark_started, prepare_folder
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_a_folder_made_by_a_start_that_failed_is_removed_and_a_begun_study_kept(tmp_path):
    study = prepare_folder(str(tmp_path), "s", "gradnorm", resume=False, overwrite=False)
    (study / "manifest.json").write_text(json.dumps({"finished": False}))  # what begin_study writes first
    discard_unstarted()  # e.g. Ray could not start
    assert not study.exists()
    assert prepare_folder(str(tmp_path), "s", "gradnorm", resume=False, overwrite=False) == study  # runs again
    mark_started()  # the first phase began: trials may have run
    (study / "manifest.json").write_text(json.dumps({"finished": False}))
    discard_unstarted()
    assert (study / "manifest.json").is_file() and not folder.was_started()  # kept, and the mark is this run's


def test_a_study_resumed_is_never_removed_even_when_its_restart_fails(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "manifest.json").write_text("{}")
    prepare_folder(str(tmp_path), "s", "gradnorm", resume=True, overwrite=False)
    discard_unstarted()  # not this process's folder: untouched
    assert (tmp_path / "s" / "manifest.json").is_file()


@pytest.mark.slow  # a fresh interpreter and Ray's start: 90 s on this machine's 2 busy cores
def test_a_dashboard_port_in_use_is_one_line_and_leaves_no_folder_that_blocks_the_name(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    with socket.socket() as busy:  # a real program holding the port, on the address the dashboard asks for
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-m", "study.run", "--samples", "1", "--epochs", "1", "--storage", str(tmp_path),
               "--name", "s", "--dashboard-port", str(port), *TINY]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert done.returncode == 2, done.stdout + done.stderr
    assert errors == [f"error: --dashboard-port {port}: 127.0.0.1:{port} is in use by another program; nothing was "
                      "started; leave out --dashboard-port to take the first free port from 8265 on, or give "
                      "another port"], done.stderr
    assert "Traceback" not in done.stderr
    assert "Token authentication is enabled" not in done.stderr  # Ray's line the tool does not use
    assert not (tmp_path / "s").exists()  # nothing blocks `--name s` without --resume
    assert prepare_folder(str(tmp_path), "s", "gradnorm", resume=False, overwrite=False) == tmp_path / "s"
    discard_unstarted()
