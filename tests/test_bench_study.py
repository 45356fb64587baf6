"""The study benchmark's memory probe: shared-memory pages read by two processes are seen once per process
in Rss and split between them in Pss; the peaks aggregate over the processes alive at each sample."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from study.benchmarks.study import KIB_PER_MIB, TrialProcesses, command_line, memory_kib
from study.tuning.processes import descendants

SHM = Path("/dev/shm")
SIZE = 4 * 2**20  # bytes of the fake object store

# maps the file, reads every page (as a trial reads the dataset in place), then waits for stdin to close
READER = """
import mmap, sys
with open(sys.argv[1], "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
total = sum(m[i] for i in range(0, len(m), 4096))
print("ready", total, flush=True)
sys.stdin.read()
"""

pytestmark = pytest.mark.skipif(not (SHM.is_dir() and Path("/proc/self/smaps_rollup").exists()),
                                reason="needs Linux /dev/shm and /proc/PID/smaps_rollup")


@pytest.fixture
def store_file():
    path = SHM / f"plasma-test-{uuid.uuid4().hex}"  # named like Ray's store, so the probe counts it
    path.write_bytes(b"\1" * SIZE)
    yield path
    path.unlink()


def readers(path: Path, n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().startswith("ready")
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.communicate(timeout=30)


def test_two_readers_each_map_the_store_once_and_split_its_pss(store_file):
    procs = readers(store_file, 2)
    try:
        assert {p.pid for p in procs} <= set(descendants(os.getpid()))
        assert "plasma-test-" in command_line(procs[0].pid)
        mems = [memory_kib(p.pid) for p in procs]
    finally:
        stop(procs)
    size_kib = SIZE // 1024
    for mem in mems:
        assert mem is not None
        assert mem["store_rss"] == size_kib  # every page read, counted in full by each process
        assert mem["store_pss"] == pytest.approx(size_kib / 2, abs=8)  # shared by the two: half each
        assert mem["rss"] >= mem["store_rss"] and mem["uss"] < mem["rss"]
    assert memory_kib(procs[0].pid) is None  # gone


def test_a_process_without_the_store_has_none_of_it():
    mem = memory_kib(os.getpid())
    assert mem is not None and mem["store_rss"] == mem["store_pss"] == 0 and mem["rss"] > 0


def test_peaks_aggregate_over_the_processes_alive_at_each_sample():
    procs = TrialProcesses()
    mib = KIB_PER_MIB
    procs.samples = [
        {1: {"rss": 10 * mib, "pss": 6 * mib, "uss": 4 * mib, "store_rss": 2 * mib, "store_pss": 1 * mib}},
        {1: {"rss": 12 * mib, "pss": 7 * mib, "uss": 5 * mib, "store_rss": 3 * mib, "store_pss": 1 * mib},
         2: {"rss": 8 * mib, "pss": 5 * mib, "uss": 3 * mib, "store_rss": 3 * mib, "store_pss": 2 * mib}},
    ]
    assert procs.peaks_mib() == {
        "processes_max": 2, "rss_sum_mib": 20.0, "pss_sum_mib": 12.0, "uss_sum_mib": 8.0, "uss_mean_mib": 4.0,
        "store_rss_max_mib": 3.0, "store_rss_sum_mib": 6.0, "store_pss_sum_mib": 3.0,
    }
