"""A study submitted as a Ray job (``ray job submit``), as a team drives a shared cluster (KubeRay, a cloud one).

The cluster is tests/loopback_cluster.py's two nodes with the head's dashboard on (the job API is the
dashboard's), all on 127.0.0.1 with token authentication. The job ships this checkout as its working
directory (Ray leaves out what .gitignore does: .venv, results/), its driver joins the cluster the job runs on
(``RAY_ADDRESS``, set by Ray's job supervisor: no ``--address``) and writes to a ``--storage`` every node sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TINY
from tests.loopback_cluster import ROOT, two_node_cluster

pytestmark = pytest.mark.slow  # a cluster with its dashboard, a job's environment and a study: about a minute

RAY = str(Path(sys.executable).parent / "ray")


def submit(dashboard: str, env: dict[str, str], *study: str) -> subprocess.CompletedProcess:
    runtime_env = {"working_dir": str(ROOT), "excludes": [".git"]}
    return subprocess.run([RAY, "job", "submit", "--address", dashboard, "--runtime-env-json", json.dumps(runtime_env),
                           "--", "python", "-m", "study.run", *study], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_study_submitted_as_a_ray_job_runs_on_the_cluster_and_lands_in_its_storage(tmp_path):
    storage = tmp_path / "shared"  # a folder every node of this one-machine cluster sees, as NFS would be
    with two_node_cluster(dashboard=True) as nodes:
        env = {k: v for k, v in nodes.env.items() if k != "PYTHONPATH"}  # the code must come with the job
        done = submit(nodes.dashboard, env, "--space", "gradnorm", "--samples", "2", "--epochs", "1",
                      "--max-concurrent", "2", "--storage", str(storage), "--name", "job", *TINY)
        relative = submit(nodes.dashboard, env, "--samples", "2", "--epochs", "1", "--storage", "results", *TINY)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    trials = pd.read_parquet(storage / "job" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}
    # the job's driver joined the cluster (both nodes ran a trial), not a Ray instance of its own inside the job
    assert set(trials["node_id"]) == {nodes.head, nodes.worker}
    manifest = json.loads((storage / "job" / "manifest.json").read_text())
    assert manifest["settings"]["address"] and manifest["settings"]["storage"] == str(storage)
    # a relative --storage would land in the job's temporary copy of the working directory: refused, one line
    assert relative.returncode != 0
    assert "a Ray job runs in a temporary copy of its working directory" in relative.stdout + relative.stderr
