"""The Ray session a study runs in: a new local instance of our own, or a running cluster's ``--address``.

Reaching Ray is checked first (``check_reachable``: ``ray.init`` itself retries an unreachable address
for minutes), and the dashboard's exposure is said out loud before it listens anywhere but this machine.

A local instance is this machine's alone: its node address is 127.0.0.1, so every server it opens (GCS,
raylet, object manager, workers, the dashboard agent and both metrics endpoints) listens on loopback only,
and its dashboard takes the first free port from 8265 on (two studies side by side each get their own).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import ray

from study.errors import UsageError
from study.tuning.nodes import AUTH_HINT
from study.tuning.ray_console import quiet_ray_console

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Ray's own switch for a machine-local node (its default on macOS and Windows): the node's address is 127.0.0.1,
# and Ray binds its servers to the node's address. Ray reads it when imported (ray_constants) and each process it
# starts reads it again from the environment it inherits, so both are set.
LOCAL_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOCAL_NODE_CONSTANT = "ENABLE_RAY_CLUSTER"  # its value as ray._private.ray_constants read it at import
PORT_HINT = "; leave out --dashboard-port to take the first free port from 8265 on"
# Ray's job supervisor sets these for the driver of a submitted job (`ray job submit ... -- python -m study.run`):
# the job's runtime environment (its working directory: this project's code, shipped) and the cluster's address
JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def job_address(environ: dict[str, str]) -> str | None:
    """The cluster a submitted Ray job runs on (``RAY_ADDRESS``, set by the job supervisor), or None outside a
    job. A study started by ``ray job submit`` joins that cluster, as ``--address`` would, instead of starting
    a Ray instance of its own inside the job."""
    return (environ.get("RAY_ADDRESS") or None) if JOB_ENV in environ else None


def settle_in_job(storage: str, mlflow: bool) -> None:
    """Inside a submitted job: import the whole project now and work from ``storage``.

    Ray may delete the job's unpacked working directory (the driver's current directory and the code it
    imports from) while the job still runs, once the trial workers that shared it exit (ray-project/ray#52343:
    Tune's end-of-run analysis then fails on ``os.getcwd()``). Every module the driver may import later (the
    phases import theirs lazily) is loaded before that can happen, and the current directory is the study's
    storage, which outlives the job. The benchmarks are never a study's, and MLflow's callback only with
    ``--mlflow`` (without the flag MLflow is never imported)."""
    import importlib
    import pkgutil

    for name in ("study", "trainables", "search_spaces"):
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if module.name.startswith("study.benchmarks") or (module.name.endswith(".mlflow_trials") and not mlflow):
                continue
            try:
                importlib.import_module(module.name)
            except ImportError:  # an optional extra this node lacks (a benchmark's peer, kaleido): not needed here
                continue
    os.makedirs(storage, exist_ok=True)
    os.chdir(storage)


def local_node_only() -> None:
    """Make the Ray instance this process starts a loopback-only node (call before ``ray.init``).

    The switch is a private constant of Ray's: a Ray that no longer has it is one line here, before anything
    starts, never a node that silently listens on the machine's network address (``check_loopback`` checks the
    node Ray then started, whatever the switch did)."""
    from ray._private import ray_constants

    if not hasattr(ray_constants, LOCAL_NODE_CONSTANT):
        raise UsageError(f"Ray {ray.__version__} has no ray._private.ray_constants.{LOCAL_NODE_CONSTANT}, the switch "
                         "that keeps a study's own Ray node on 127.0.0.1 (docs/security.md); nothing was started — "
                         "install the Ray this project pins (pip install -e .) or run on a cluster you set up "
                         "(--address)")
    os.environ[LOCAL_NODE_ENV] = "0"
    setattr(ray_constants, LOCAL_NODE_CONSTANT, False)  # ray was imported before the line above: already read


def check_loopback(address_info: dict[str, Any]) -> None:
    """The local node Ray started is on loopback (``node_ip_address`` and the GCS's host): one line otherwise.

    Ray binds every server of a node to the node's address, so a node address beyond loopback means the study's
    Ray listens on the network; ``start_ray`` shuts such a node down before any trial runs."""
    hosts = {"node": str(address_info.get("node_ip_address") or "")}
    gcs = str(address_info.get("gcs_address") or "")
    if gcs:
        hosts["GCS"] = gcs.rsplit(":", 1)[0].strip("[]")
    for what, host in hosts.items():
        if not is_loopback(host):
            raise UsageError(f"the study's own Ray {what} is at {host or '(no address)'}, not on loopback "
                             f"(127.0.0.1): Ray {ray.__version__} ignored {LOCAL_NODE_ENV}=0, so its servers would "
                             "listen on the network; it was shut down before any trial ran — install the Ray this "
                             "project pins (pip install -e .) or run on a cluster you set up (--address)")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, ::ffff:127.x.x.x, or the name ``localhost``."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast on an unreachable ``--address`` (``ray.init`` itself retries for minutes)."""
    if address == "auto" or "://" in address:
        return  # "auto" reads the local cluster file; ray:// (Ray Client) is checked by ray.init
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address {address!r}: expected HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UsageError(f"--address {address}: no Ray head node answers there ({err.strerror or err}); start one "
                         "with `ray start --head` or check the address") from None


def start_ray(address: str | None, dashboard_host: str, dashboard_port: int | None) -> None:
    """Connect to ``address``, or start a new local Ray instance with its dashboard (once per process).

    ``dashboard_port`` None: the first free port from 8265 on (Ray's own search); a port given is that port
    or a one-line error when it is taken."""
    quiet_ray_console()  # Ray's lines the tool does not use (study/tuning/ray_console.py), before Ray says them
    if ray.is_initialized():
        return
    if dashboard_host not in LOCAL_HOSTS:
        print(f"warning: the Ray dashboard will listen on {dashboard_host}: anyone who reaches that address can "
              "submit jobs (CVE-2023-48022); token authentication is on, keep the token secret "
              "(`ray get-auth-token`)", file=sys.stderr)
    # Ray >= 2.52 turns token authentication on by default for a new local cluster; we never turn it off.
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        print("warning: RAY_AUTH_MODE=disabled: the Ray dashboard and job API accept anyone who can reach them",
              file=sys.stderr)
    if not address:
        local_node_only()  # (outside the try below: a Ray without the switch is its own line)
    try:
        if address:
            context = ray.init(address=address, log_to_driver=False)
        else:  # "local": a new instance of our own, never the cluster a stale ray_current_cluster file names
            context = ray.init(address="local", include_dashboard=True, dashboard_host=dashboard_host,
                               dashboard_port=dashboard_port, log_to_driver=False)
    except Exception as err:  # an unreachable --address, a port in use, ...
        if dashboard_port and not address and "already occupied" in str(err):  # Ray's advice names its own flags
            raise UsageError(f"--dashboard-port {dashboard_port}: {dashboard_host}:{dashboard_port} is in use by "
                             f"another program; nothing was started{PORT_HINT}, or give another port") from None
        raise UsageError(f"cannot start or reach Ray{' at ' + address if address else ''}: "
                         f"{str(err).splitlines()[0][:200]}" + (f"; {AUTH_HINT}" if address else
                                                                      PORT_HINT if dashboard_port else "")) from None
    if not address:
        try:
            check_loopback(dict(getattr(context, "address_info", {}) or {}))
        except UsageError:
            ray.shutdown()
            raise
    url = getattr(context, "dashboard_url", None)
    if url:
        print(f"Ray dashboard: http://{url}  (token login: `ray get-auth-token` prints the token)", flush=True)
