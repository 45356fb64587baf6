"""The README's main command in its own process, with its own Ray cluster: it finishes, and the Ray
dashboard it starts listens on 127.0.0.1 only — even when a dead cluster's address is what Ray's
``ray_current_cluster`` file names (a crashed ``ray start`` or a killed earlier run leaves one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_main_command_runs_and_binds_the_dashboard_to_localhost(tmp_path):
    cmd = [sys.executable, "-m", "study.run", "--space", "gradnorm", "--samples", "1", "--epochs", "1",
           "--storage", str(tmp_path), "--name", "main", *TINY]
    # Ray's temp folder (short: Ray's socket paths live under it), naming a cluster no one serves any more
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmp)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[str] = set()
    port = None
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        match = re.search(r"Ray dashboard: http://([\d.]+):(\d+)", line)
        if match:
            port = int(match.group(2))
            assert match.group(1) == "127.0.0.1"
        if port is not None and not seen:
            seen = listening_addresses(port)
        if time.monotonic() > deadline:
            proc.kill()
            break
    assert proc.wait() == 0, "".join(lines[-20:])
    assert port is not None, "no dashboard URL printed"
    assert seen == {"127.0.0.1"}, seen
    trials = pd.read_parquet(tmp_path / "main" / "trials.parquet")
    assert list(trials["status"]) == ["finished"]
