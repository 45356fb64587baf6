"""A result is pinned to its code only if the code, the data and the seed fix it: two fresh processes (different
hash seeds, so no set or dict order can leak in) train the same tiny model from the same seed to bit-identical
weights, and another seed does not. tests/test_engine.py holds a resumed run to an uninterrupted one in one
process; this holds one process to another."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.markdown_pages import ROOT

PROBE = """
import hashlib, sys, torch
torch.set_num_threads(1)
from trainables.config import TrialConfig
from trainables.data.loader import load_data
from trainables.engine import fit
for seed in sys.argv[1:]:
    cfg = TrialConfig.from_partial({"data.imgsz": 64, "data.synthetic_train": 16, "data.synthetic_val": 8,
        "data.synthetic_test": 8, "data.batch": 8, "data.mosaic": True, "data.close_mosaic": 1,
        "train.interference_batches": 1, "train.epochs": 2, "train.seed": int(seed),
        "balancer.name": "gradnorm", "balancer.warmup_steps": 1})
    result = fit(cfg, load_data(cfg.data, seed=0), report=lambda metrics, state: None)
    weights = b"".join(v.detach().float().numpy().tobytes() for v in result.model.state_dict().values())
    print(result.status, hashlib.sha256(weights).hexdigest())
"""


def weights_hashes(seeds: list[int], hash_seed: str) -> list[str]:
    """sha256 of the trained weights for each seed, in order, from one fresh process with PYTHONHASHSEED=hash_seed."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, seeds)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith(("finished ", "diverged "))]
    assert [status for status, _ in lines] == ["finished"] * len(seeds), done.stdout
    return [digest for _, digest in lines]


def test_two_processes_train_the_same_seed_to_the_same_weights():
    seven, eight = weights_hashes([7, 8], hash_seed="1")
    assert weights_hashes([7], hash_seed="2") == [seven]
    assert eight != seven  # the seed reaches the weights (the hash is not a constant)
