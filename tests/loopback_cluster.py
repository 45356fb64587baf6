"""A two-node Ray cluster on this machine, every process bound to 127.0.0.1, for tests/test_cluster.py.

``python -m tests.loopback_cluster`` starts a head node (1 CPU, no GPU) and a second node (1 CPU, one
*logical* GPU: Ray schedules it, no CUDA stands behind it) with Ray's own ``ray.cluster_utils.Cluster``,
prints one JSON line ``{"address", "head", "worker"}`` and serves until its stdin closes.

Why not two ``ray start`` processes: ``ray start`` rewrites ``--node-ip-address=127.0.0.1`` to the
machine's outward address (``resolve_ip_for_localhost``), so its gRPC servers listen on every
interface; with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray keeps 127.0.0.1 (and then binds loopback
only) but ``ray start --address`` refuses to add a second node. ``Cluster`` starts the same processes
(``ray._private.node.Node``, as ``ray start`` does) without that refusal. Run it with that variable
set to 0, ``RAY_TMPDIR`` pointing at a private folder (the session files and the "current cluster"
address file go there, not to the machine's shared /tmp/ray) and any ``RAY_AUTH_*`` settings.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    # fixed default ports of the metrics exporters would clash with another Ray cluster on this machine
    os.environ.setdefault("AUTOSCALER_METRIC_PORT", str(free_port()))
    os.environ.setdefault("DASHBOARD_METRIC_PORT", str(free_port()))
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False,
                        "dashboard_agent_listen_port": free_port()},
        shutdown_at_exit=True,  # and a reaper process: the nodes die with this process, even on SIGKILL
    )
    worker = cluster.add_node(num_cpus=1, num_gpus=1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through atexit: the nodes are shut down
    print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id, "worker": worker.node_id}),
          flush=True)
    sys.stdin.read()  # until the test closes our stdin
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
