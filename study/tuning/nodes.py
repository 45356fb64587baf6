"""What a study on a multi-node Ray cluster needs from every node, checked before the first trial.

A trial may land on any node, so every node must (1) import this project (the trainable is sent by
reference to ``trainables.ray_trial``, not as code), and (2) see the study folder at the same path (each
trial writes its checkpoints there and the driver reads them back). The dataset needs nothing: it
travels through Ray's object store. ``check_nodes`` runs one tiny task pinned to each alive node and
turns the first thing missing into one ``UsageError`` line that names the node and what to do.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.errors import UsageError

PROBE_PREFIX = ".node-probe-"
AUTH_HINT = ("if the cluster uses token authentication, give this machine the head's token: "
             "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=... (or ~/.ray/auth_token; `ray get-auth-token` on the head)")


@dataclass(frozen=True)
class NodeReport:
    node_id: str
    node_ip: str
    cpus: float
    gpus: float
    cuda_devices: int  # what torch on that node can see; 0 on a node that declares GPUs Ray cannot back


def _probe(path: str, token: str) -> tuple[bool, str, int]:
    """On one node: (project importable, probe file content or why not, CUDA devices torch sees)."""
    try:
        import torch

        import trainables.ray_trial  # noqa: F401  the trainable's module, as a trial imports it
    except ImportError as err:
        return False, f"{type(err).__name__}: {err}", 0
    try:
        seen = Path(path).read_text()
    except OSError as err:
        seen = f"{type(err).__name__}: {err.strerror or err}"
    return True, "ok" if seen == token else seen, torch.cuda.device_count()


def check_nodes(study_dir: str | Path, timeout_s: float = 120.0) -> list[NodeReport]:
    """One pinned task per alive node of the connected cluster; raises UsageError for a node that
    cannot import the project or cannot see ``study_dir``. Call after ``ray.init``."""
    study_dir = Path(study_dir).resolve()
    token = secrets.token_hex(8)
    probe_file = study_dir / f"{PROBE_PREFIX}{token}"
    probe_file.write_text(token)
    probe = ray.remote(num_cpus=0)(_probe)  # no CPU: it must run even while trials hold every core
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = {
            n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(str(probe_file), token)
            for n in nodes
        }
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        reports = []
        for node in nodes:
            ref, where = refs[node["NodeID"]], f"node {node['NodeManagerAddress']} ({node['NodeID'][:8]})"
            if ref not in ready:
                raise UsageError(f"{where} did not answer within {timeout_s:.0f}s; check it with `ray status`")
            try:
                importable, seen, cuda = ray.get(ref)
            except ray.exceptions.RayError as err:  # e.g. the function's module cannot be unpickled there
                importable, seen, cuda = False, str(err).strip().splitlines()[-1][:200], 0
            if not importable:
                raise UsageError(f"{where} cannot import this project ({seen}); install it on every node "
                                 "(`pip install -e .` in the same checkout, or the same container image)")
            if seen != "ok":
                raise UsageError(f"{where} cannot see the study folder {study_dir} ({seen}); --storage must be a "
                                 "folder every node mounts at the same path (NFS or another shared filesystem)")
            resources = node.get("Resources", {})
            reports.append(NodeReport(node["NodeID"], node["NodeManagerAddress"], float(resources.get("CPU", 0)),
                                      float(resources.get("GPU", 0)), int(cuda)))
        return reports
    finally:
        probe_file.unlink(missing_ok=True)


def describe(reports: list[NodeReport]) -> list[str]:
    """One line per node for the study's log, plus a warning for GPUs torch cannot see."""
    lines = []
    for r in reports:
        line = f"node {r.node_ip} ({r.node_id[:8]}): {r.cpus:g} CPU, {r.gpus:g} GPU"
        if r.gpus > 0 and r.cuda_devices == 0:
            line += ("  warning: declares GPUs but torch there sees no CUDA device; trials given a GPU on it "
                     "will train on cpu")
        lines.append(line)
    return lines
