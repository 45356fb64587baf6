"""``study.bench gpu`` runs on a bare GPU box: it pulls in no Ray or Optuna, and without CUDA it says so and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from study.benchmarks.gpu import nvidia_smi_id

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from study.bench import main
code = main(["gpu"])
print("EXIT", code)
print("LOADED", sorted({m.split(".")[0] for m in sys.modules} & {"ray", "optuna"}))
"""


def test_gpu_bench_imports_no_ray_or_optuna_and_skips_without_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no CUDA device, even on a GPU machine
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    assert json.loads(out[0]) == {"bench": "gpu", "skipped": "no CUDA device"}
    assert out[1:] == ["EXIT 0", "LOADED []"]


def test_nvidia_smi_id_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, GPU-5a1b")
    assert nvidia_smi_id(torch.device("cuda:0")) == "3"
    assert nvidia_smi_id(torch.device("cuda:1")) == "GPU-5a1b"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvidia_smi_id(torch.device("cuda:2")) == "2"
