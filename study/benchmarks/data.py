"""Benchmark: the data layer's costs, side by side in one run.

    python -m study.benchmarks.data [--data PATH/data.yaml] [--sizes 320 128] [--repeats 3]

Rows: cold decode + cache write and warm (cache-hit) load of a real dataset (the shared
regurgitation set when present) per image size, with the cache's size on disk; synthetic frames
per second; augmentation time per batch (16 images, 320 px) on the best device here. The cache
goes to a temporary folder, so the user's cache is neither used nor filled.

Named for its subcommand (``python -m study.bench data`` imports ``study.benchmarks.data``), hence the name it
shares with study/data.py and trainables/data/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainables.config import DataConfig
from trainables.data.augment import augment_batch
from trainables.data.loader import load_dataset
from trainables.data.synthetic import synthetic_data

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "regurgitation" / "data.yaml"


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def decode_rows(source: Path, sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        cold, warm, cache_bytes, images = [], [], 0, 0
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                data, report = load_dataset(source, size, cache_root=Path(tmp))
                cold.append(time.perf_counter() - start)
                assert not report.cache_hit and report.cache_path is not None
                start = time.perf_counter()
                _, again = load_dataset(source, size, cache_root=Path(tmp))
                warm.append(time.perf_counter() - start)
                assert again.cache_hit
                cache_bytes, images = _folder_bytes(report.cache_path), len(data.images)
        cold_s, warm_s = statistics.median(cold), statistics.median(warm)
        rows.append({"name": f"decode+cache cold, imgsz {size}", "value": round(cold_s, 3), "unit": "s",
                     "images": images, "images_per_s": round(images / cold_s, 1)})
        rows.append({"name": f"warm load (cache hit), imgsz {size}", "value": round(warm_s, 3), "unit": "s",
                     "ratio_cold_to_warm": round(cold_s / warm_s, 1)})
        rows.append({"name": f"cache size, imgsz {size}", "value": round(cache_bytes / 2**20, 1), "unit": "MiB"})
    return rows


def synthetic_row(size: int = 128, frames: int = 1024, repeats: int = 3) -> dict[str, Any]:
    synthetic_data(64, 0, 0, size, seed=0)  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        synthetic_data(frames, 0, 0, size, seed=r)
        times.append(time.perf_counter() - start)
    fps = frames / statistics.median(times)
    return {"name": f"synthetic frames, {size} px", "value": round(fps, 1), "unit": "frames/s"}


def augment_row(batch: int = 16, size: int = 320, steps: int = 20) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = synthetic_data(batch, 0, 0, size, seed=0)
    images = torch.from_numpy(data.images).to(device).float() / 255  # (B, 3, S, S)
    targets = torch.from_numpy(data.boxes).to(device)  # (K, 6)
    cfg, gen = DataConfig(), torch.Generator().manual_seed(0)
    for _ in range(3):
        augment_batch(images, targets, cfg, gen)  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        augment_batch(images, targets, cfg, gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - start) / steps * 1000
    return {"name": f"augment batch {batch} x {size} px", "value": round(ms, 2), "unit": "ms/batch",
            "device": str(device), "threads": torch.get_num_threads()}


def run(source: str | Path | None = None, sizes: Sequence[int] = (320, 128), repeats: int = 1) -> list[dict]:
    """All rows; the real-data rows only when ``source`` (default: the shared dataset) exists."""
    path = Path(source) if source else SHARED
    rows = decode_rows(path, sizes, repeats) if path.is_file() else []
    return [*rows, synthetic_row(), augment_row()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m study.benchmarks.data", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help=f"a data.yaml (default: {SHARED})")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 128])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    for row in run(args.data, args.sizes, args.repeats):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
