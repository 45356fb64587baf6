"""Shared fixtures: one real local Ray cluster for the whole session, the shared dataset's path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASET = ROOT.parent / "shared" / "datasets" / "regurgitation" / "data.yaml"
# Tiny synthetic studies: 64 px frames, a few dozen images, so a trial takes seconds on 2 cores.
TINY = ["--set", "data.imgsz=64", "--set", "data.synthetic_train=24", "--set", "data.synthetic_val=12",
        "--set", "data.synthetic_test=12", "--set", "train.interference_batches=1"]


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (2 CPUs, no dashboard), started once and shared by every Ray test.

    Its workers get the repository root on ``PYTHONPATH``: a trial may name a balancer of this folder
    (``balancer.name=tests.faults:...``), and Ray adds the driver's working directory to the workers'
    ``sys.path`` only, which is the root only when pytest is started there."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
        try:  # the cluster's processes (and so every worker) inherit the environment of this moment
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        finally:
            if before is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = before
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _tool_cache(tmp_path_factory, monkeypatch):
    """Decoded-data caches and the DICOM pseudonym key of tests go to a temporary folder, never to the user's
    cache or settings, or next to data."""
    monkeypatch.setenv("MTL_STUDY_CACHE", str(tmp_path_factory.getbasetemp() / "mtl-cache"))
    monkeypatch.setenv("MTL_STUDY_CONFIG", str(tmp_path_factory.getbasetemp() / "mtl-config"))


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    if not SHARED_DATASET.exists():
        pytest.skip(f"the shared dataset is not here ({SHARED_DATASET})")
    return SHARED_DATASET


@pytest.fixture
def single_thread():
    """torch at one intra-op thread for the test (timings and bf16 reductions as a trial sees them), then back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
