"""The study on a real two-node Ray cluster on this machine (loopback only, token authentication on).

The session's own Ray cluster (conftest ``ray_cluster``) lives in the pytest process, so this module's
cluster runs in a subprocess (tests/loopback_cluster.py: a head with 1 CPU and a node with 1 CPU and
one logical GPU) and the study CLI connects to it with ``--address`` from another subprocess, as a
user's driver would. Everything started here is stopped by process group when the module's tests are done.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from study.tuning.processes import descendants
from tests.conftest import TINY
from tests.loopback_cluster import TwoNodes, two_node_cluster

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}  # /proc/net


@pytest.fixture(scope="module")
def two_nodes():
    try:
        with two_node_cluster() as nodes:
            yield nodes
    except RuntimeError as err:  # the cluster did not start: the log says why
        pytest.fail(str(err))


def study(nodes: TwoNodes, storage: Path, name: str, *args: str, env: dict[str, str] | None = None):
    cmd = [sys.executable, "-m", "study.run", "--address", nodes.address, "--storage", str(storage), "--name", name,
           "--space", "gradnorm", "--samples", "2", "--max-concurrent", "2", *TINY, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env or nodes.env, capture_output=True, text=True, timeout=400)


def test_trials_run_on_both_nodes_and_every_result_lands(two_nodes, tmp_path):
    done = study(two_nodes, tmp_path, "c", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "c" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "c" / "epochs.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}
    # 1 CPU per node and 1 CPU per trial: one trial on each node, the dataset reached both via the object store
    assert set(trials["node_id"]) == {two_nodes.head, two_nodes.worker}
    assert set(trials["node_ip"]) == {"127.0.0.1"}
    assert set(trials["device"]) == {"cpu"} and set(trials["gpus"]) == {0.0}
    assert set(trials["device_warning"]) == {""}
    assert dict(zip(epochs["trial_id"], epochs["node_id"], strict=True)) == dict(
        zip(trials["trial_id"], trials["node_id"], strict=True))
    for trial_id in trials["trial_id"]:  # each node wrote its checkpoint into the shared study folder
        assert list((tmp_path / "c").glob(f"trial_{trial_id}/checkpoint_*/checkpoint.pt")), trial_id

    # every process of the cluster (nodes, agents, workers) listens on loopback only
    listening = _listening_addresses({two_nodes.pid, *descendants(two_nodes.pid)})
    assert listening and set(listening) <= LOOPBACK_HEX, listening


def test_a_logical_gpu_is_shared_by_two_trials_that_train_on_cpu_and_say_so(two_nodes, tmp_path):
    done = study(two_nodes, tmp_path, "g", "--epochs", "2", "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "g" / "trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}
    assert set(trials["node_id"]) == {two_nodes.worker}  # the only node that declares a GPU
    assert set(trials["gpus"]) == {0.5} and set(trials["device"]) == {"cpu"}
    assert set(trials["train.device"]) == {"auto"}  # what was asked; `device` is what it trained on
    # two halves of one GPU: the trials ran at the same time on it
    assert trials["started_at"].max() < trials["ended_at"].min(), trials[["started_at", "ended_at"]]
    for trial_id, warning in zip(trials["trial_id"], trials["device_warning"], strict=True):
        assert "Ray gave this trial 0.5 GPU but torch sees no CUDA device" in warning
        shown = [ln for ln in done.stderr.splitlines() if ln.startswith(f"warning: trial {trial_id} ")]
        assert len(shown) == 1, done.stderr[-3000:]  # one line per trial, not one per epoch


def test_node_check_reports_each_node_and_a_gpu_torch_cannot_see(two_nodes, tmp_path):
    code = ("import sys, ray; from study.tuning.nodes import check_nodes, describe; "
            "ray.init(address=sys.argv[1], log_to_driver=False); print('\\n'.join(describe(check_nodes(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", code, two_nodes.address, str(tmp_path)], cwd=ROOT,
                          env=two_nodes.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {ln.split(")")[0]: ln for ln in done.stdout.splitlines() if ln.startswith("node ")}
    head, worker = lines[f"node 127.0.0.1 ({two_nodes.head[:8]}"], lines[f"node 127.0.0.1 ({two_nodes.worker[:8]}"]
    assert "1 CPU, 0 GPU" in head and "warning" not in head
    assert "1 CPU, 1 GPU" in worker and "torch there sees no CUDA device" in worker
    assert not list(tmp_path.iterdir())  # the probe file is removed


@pytest.mark.slow  # a fresh driver process against the two-node cluster: 25 s (CI runs it: .ci/run)
def test_a_driver_without_the_token_gets_one_error_line(two_nodes, tmp_path):
    env = {k: v for k, v in two_nodes.env.items() if not k.startswith("RAY_AUTH_")}
    done = study(two_nodes, tmp_path, "n", "--epochs", "1", env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot start or reach Ray at {two_nodes.address}")
    assert "RAY_AUTH_TOKEN" in done.stderr  # the hint says what a client of a token cluster needs
    assert not (tmp_path / "n" / "trials.parquet").exists()


@pytest.mark.parametrize(("requested", "gpus", "cuda", "device", "warns"), [
    ("auto", 0.0, False, "cpu", False),
    ("auto", 0.0, True, "cpu", False),  # CUDA visible but no GPU from Ray: not ours to take
    ("auto", 0.25, True, "cuda", False),
    ("auto", 0.25, False, "cpu", True),  # a GPU from Ray that torch cannot see: cpu, and a warning
    ("cpu", 1.0, True, "cpu", False),  # asked for explicitly
])
def test_the_device_follows_what_ray_scheduled(requested, gpus, cuda, device, warns):
    from trainables.ray_trial import choose_device

    chosen, warning = choose_device(requested, gpus, cuda)
    assert chosen == device and bool(warning) == warns


def test_a_trial_row_records_where_its_last_report_ran():
    from study.store.trials import trial_row, trials_table
    from trainables.config import TrialConfig

    cfg = TrialConfig().to_flat()
    here = {"node_id": "aa" * 28, "node_ip": "10.0.0.5", "node_host": "gpu-1", "device": "cuda:0", "gpus": 0.25,
            "device_warning": "", "started_at": 100.0}
    epochs = [{"epoch": 1, "val.objective": 0.2, **here, "node_id": "bb" * 28, "reported_at": 110.0, "attempt": 1},
              {"epoch": 2, "val.objective": 0.1, **here, "reported_at": 120.0, "attempt": 2}]  # retried elsewhere
    row = trial_row("t1", "gradnorm", cfg, epochs, status="finished")
    assert row["node_id"] == "aa" * 28 and row["device"] == "cuda:0" and row["gpus"] == 0.25
    assert row["node_ids"] == f"{'bb' * 28},{'aa' * 28}" and row["attempts"] == 2  # every node, in order
    assert row["started_at"] == 100.0 and row["ended_at"] == 120.0 and row["best_epoch"] == 1
    table = trials_table([row, trial_row("t2", "gradnorm", cfg, [], status="error")])
    assert str(table.schema.field("node_id").type) == "string" and str(table.schema.field("gpus").type) == "double"
    assert table.column("device").to_pylist() == ["cuda:0", None]


def _listening_addresses(pids: set[int]) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) of the TCP sockets ``pids`` listen on."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state 0A: LISTEN
                out.append(fields[1].split(":")[0])
    return out
