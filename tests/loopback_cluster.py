"""A two-node Ray cluster on this machine, every process bound to 127.0.0.1, for tests/test_cluster.py.

``python -m tests.loopback_cluster`` starts a head node (1 CPU, no GPU) and a second node (1 CPU, one
*logical* GPU: Ray schedules it, no CUDA stands behind it) with Ray's own ``ray.cluster_utils.Cluster``,
prints one JSON line ``{"address", "head", "worker", "dashboard"}`` and serves until its stdin closes.
``--dashboard`` starts the head's dashboard (and with it the job API) on a free loopback port; without it
``dashboard`` is null. A line ``remove-worker`` on stdin kills the second node at once, as a machine that
dies would (``Cluster.remove_node(allow_graceful=False)``), and is answered with a line ``removed``.

Why not two ``ray start`` processes: ``ray start`` rewrites ``--node-ip-address=127.0.0.1`` to the
machine's outward address (``resolve_ip_for_localhost``), so its gRPC servers listen on every
interface; with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray keeps 127.0.0.1 (and then binds loopback
only) but ``ray start --address`` refuses to add a second node. ``Cluster`` starts the same processes
(``ray._private.node.Node``, as ``ray start`` does) without that refusal. Run it with that variable
set to 0, ``RAY_TMPDIR`` pointing at a private folder (the session files and the "current cluster"
address file go there, not to the machine's shared /tmp/ray) and any ``RAY_AUTH_*`` settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TwoNodes:
    """A running two-node cluster, as the test process sees it."""

    address: str
    head: str  # Ray node ids
    worker: str  # the node with the logical GPU
    dashboard: str | None  # http://127.0.0.1:PORT of the head's dashboard and job API (``dashboard=True``)
    env: dict[str, str]  # what a driver on this machine needs: the token, loopback node IP
    pid: int  # the helper process: its process group holds every process of the cluster
    proc: subprocess.Popen

    def remove_worker(self) -> None:
        """Kill the second node now (every process of it, SIGKILL) and wait until it is gone."""
        self.proc.stdin.write("remove-worker\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        answer = self.proc.stdout.readline() if ready else ""
        if answer.strip() != "removed":
            raise RuntimeError(f"the worker node was not removed: {answer!r}")

    def kill(self) -> None:
        """Kill the whole cluster at once (SIGKILL to its process group), as a head machine that dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def two_node_cluster(dashboard: bool = False, env_extra: dict[str, str] | None = None) -> Iterator[TwoNodes]:
    """Start the cluster in a subprocess (its own process group and Ray folder), yield it, stop it.
    ``env_extra``: more environment for the cluster's processes (e.g. Ray's ``RAY_<config>`` settings)."""
    folder = tempfile.mkdtemp(prefix="mtl-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update({
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps 127.0.0.1 as the node IP (see the module docstring)
        "RAY_TMPDIR": folder,
        "RAY_AUTH_MODE": "token",  # the cluster requires a token; a driver must present the same one
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        **(env_extra or {}),
    })
    log = open(Path(folder) / "cluster.log", "w")  # noqa: SIM115  closed in the finally
    proc = subprocess.Popen([sys.executable, "-m", "tests.loopback_cluster", *(["--dashboard"] if dashboard else [])],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True)  # its own process group: cleaned up by id below
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 180)
        line = proc.stdout.readline() if ready else ""
        if not line:
            log_text = (Path(folder) / "cluster.log").read_text()
            raise RuntimeError(f"the two-node cluster did not start: {log_text[-2000:]}")
        info = json.loads(line)
        yield TwoNodes(info["address"], info["head"], info["worker"], info["dashboard"], env, proc.pid, proc)
    finally:
        if proc.poll() is None:
            proc.stdin.close()  # the helper shuts its cluster down and exits
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):  # anything of its group still alive (a killed head's workers)
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    # fixed default ports of the metrics exporters would clash with another Ray cluster on this machine
    os.environ.setdefault("AUTOSCALER_METRIC_PORT", str(free_port()))
    os.environ.setdefault("DASHBOARD_METRIC_PORT", str(free_port()))
    from ray.cluster_utils import Cluster

    dashboard = "--dashboard" in sys.argv[1:]
    head_args = {"num_cpus": 1, "num_gpus": 0, "include_dashboard": dashboard,
                 "dashboard_agent_listen_port": free_port()}
    if dashboard:
        head_args.update(dashboard_host="127.0.0.1", dashboard_port=free_port())
    cluster = Cluster(
        initialize_head=True,
        head_node_args=head_args,
        shutdown_at_exit=True,  # and a reaper process: the nodes die with this process, even on SIGKILL
    )
    worker = cluster.add_node(num_cpus=1, num_gpus=1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through atexit: the nodes are shut down
    url = f"http://127.0.0.1:{head_args['dashboard_port']}" if dashboard else None
    print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id, "worker": worker.node_id,
                      "dashboard": url}), flush=True)
    for line in sys.stdin:  # until the test closes our stdin
        if line.strip() == "remove-worker":
            cluster.remove_node(worker, allow_graceful=False)  # SIGKILL to every process of the node
            print("removed", flush=True)
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
