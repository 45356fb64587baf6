"""The README's main command in its own process, with its own Ray cluster, twice side by side on one
machine: both finish, each with its own dashboard port (the first free one from 8265 on) and its own study
folder, and no socket either study opens listens beyond loopback — even when a dead cluster's address is
what Ray's ``ray_current_cluster`` file names (a crashed ``ray start`` or a killed earlier run leaves one)."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from study.tuning.processes import descendants, listening_sockets
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped IPv6 loopback (``::ffff:127.0.0.1``, how an IPv6 socket of Ray's
    gRPC servers bound to 127.0.0.1 reads; ``ipaddress`` writes it ``::ffff:7f00:1``)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def test_is_loopback_reads_every_form_of_this_machine_only():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not any(is_loopback(a) for a in ("0.0.0.0", "::", "192.0.2.2", "::ffff:192.0.2.2"))


@pytest.mark.slow  # two default studies: 32 s (CI runs it: .ci/run)
def test_two_default_studies_side_by_side_finish_and_listen_on_loopback_only(tmp_path):
    cmd = [sys.executable, "-m", "study.run", "--space", "gradnorm", "--samples", "1", "--epochs", "1",
           "--storage", str(tmp_path / "results"), *TINY]  # no --name, no --dashboard-port: the defaults
    # Ray's temp folder (short: Ray's socket paths live under it), naming a cluster no one serves any more
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmp)}
    logs = [tmp_path / f"study-{k}.log" for k in range(2)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
             for log in logs]
    sockets: set[tuple[int, str, int]] = set()  # (pid, address, port) seen in LISTEN while the studies ran
    deadline = time.monotonic() + 600
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        for p in procs:
            sockets.update(listening_sockets([p.pid, *descendants(p.pid)]))
        time.sleep(0.5)
    for p in procs:
        if p.poll() is None:
            p.kill()
    outputs = [log.read_text() for log in logs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.wait() == 0, out[-3000:]
    urls = [re.search(r"Ray dashboard: http://([\d.]+):(\d+)", out) for out in outputs]
    assert all(urls), "no dashboard URL printed"
    assert {u.group(1) for u in urls} == {"127.0.0.1"}  # type: ignore[union-attr]
    assert len({u.group(2) for u in urls}) == 2, "the two studies' dashboards share a port"  # type: ignore[union-attr]
    # the check is not vacuous: each study's GCS, raylet and dashboard were seen listening
    assert len({port for _, _, port in sockets}) >= 6, sockets
    assert not {s for s in sockets if not is_loopback(s[1])}, "listening beyond loopback"
    folders = sorted((tmp_path / "results").glob("gradnorm-*[0-9]"))
    assert len(folders) == 2, folders  # each its own folder, even when started in the same second
    for folder in folders:
        assert list(pd.read_parquet(folder / "trials.parquet")["status"]) == ["finished"]
