"""Benchmark: does bf16 + channels-last train as well as fp32, and how much faster, paired by seed.

    python -m study.bench precision --data DATA.yaml [--seeds 0 1 2] [--epochs 30] [--imgsz 160]
                                    [--arch shared] [--balancer gradnorm] [--out DIR] [--set KEY=VALUE ...]

For every seed, two ``python -m study.train`` runs side by side (one torch thread each, so both share the
machine's load alike): ``train.precision=fp32`` with ``train.memory_format=contiguous`` (the engine before
``train.precision``) and ``bf16`` with ``channels_last`` (``auto`` on a CPU with bf16 matrix instructions).
The seed decides the weights, the order, the augmentation and, with ``--set data.split=patient``, which
patients validate: the two runs of a seed differ only in how they compute. Each run's per-epoch output goes
to ``OUT/<precision>-s<seed>.log``.

Printed (JSON lines): per seed, each run's best epoch (by ``val.objective``, the project's rule) and its
mAP@.5, mAP@.5:.95 and view accuracy there and at the last epoch, and its training seconds; then per metric
the mean bf16 − fp32 difference over seeds with its 95% Student-t interval, and the bf16 / fp32 ratio of
training seconds. The best epoch is picked on the frames it is scored on (optimistic for both alike); the
last epoch's values involve no choice. ``--summarize`` prints the figures of runs already in OUT.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.stats import mean_ci
from study.benchmarks.common import emit
from study.store.selection import best_epoch

VARIANTS = {"fp32": "contiguous", "bf16": "channels_last"}  # precision -> memory format: before and after
METRICS = ("val.map50", "val.map", "val.view_accuracy")


def run_dir(out: Path, precision: str, seed: int) -> Path:
    return out / f"{precision}-s{seed}"


def train_pair(out: Path, seed: int, args: argparse.Namespace) -> None:
    """The seed's fp32 and bf16 runs, started together and awaited."""
    procs = []
    for precision, memory_format in VARIANTS.items():
        cmd = [sys.executable, "-m", "study.train", "--arch", args.arch, "--balancer", args.balancer,
               "--data", args.data, "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch",
               str(args.batch), "--seed", str(seed), "--threads", "1", "--quiet", "--out",
               str(run_dir(out, precision, seed)), "--set", f"train.precision={precision}", "--set",
               f"train.memory_format={memory_format}", *(a for kv in args.set for a in ("--set", kv))]
        log = (out / f"{precision}-s{seed}.log").open("w")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        print(f"seed {seed} {precision}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    for proc, log in procs:
        proc.wait()
        log.close()


def run_figures(epochs: pd.DataFrame) -> dict[str, Any]:
    """One run's figures from its epochs.parquet rows: best epoch (by val.objective) and last epoch."""
    scored = [r for r in epochs.to_dict("records") if r.get("status") != "diverged"]
    best, last = best_epoch(scored, "val.objective"), scored[-1]
    out: dict[str, Any] = {"epochs": int(last["epoch"]), "best_epoch": int(best["epoch"]),
                           "train_s": float(last["time.train_s"]), "precision": last.get("eff.precision")}
    for key in METRICS:
        out[f"best.{key}"], out[f"last.{key}"] = float(best[key]), float(last[key])
    return out


def paired(per_seed: list[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean bf16 − fp32 difference of each metric over seeds (95% t interval), and the time ratio."""
    rows = []
    for at in ("best", "last"):
        for key in METRICS:
            col = f"{at}.{key}"
            deltas = [s["bf16"][col] - s["fp32"][col] for s in per_seed]
            ci = mean_ci(deltas, 0.95)
            rows.append({"bench": "precision", "metric": col, "n_seeds": len(deltas),
                         "fp32_mean": round(sum(s["fp32"][col] for s in per_seed) / len(per_seed), 4),
                         "bf16_mean": round(sum(s["bf16"][col] for s in per_seed) / len(per_seed), 4),
                         "delta_mean": round(ci.mean, 4), "delta_ci95": round(ci.half_width, 4),
                         "deltas": [round(d, 4) for d in deltas]})
    ratios = [s["bf16"]["train_s"] / s["fp32"]["train_s"] for s in per_seed]
    rows.append({"bench": "precision", "metric": "train_s ratio bf16/fp32", "n_seeds": len(ratios),
                 "ratio_mean": round(sum(ratios) / len(ratios), 3), "ratios": [round(r, 3) for r in ratios]})
    return rows


def summarize(out: Path, seeds: list[int]) -> list[dict[str, Any]]:
    per_seed = []
    rows = []
    for seed in seeds:
        figures = {p: run_figures(pd.read_parquet(run_dir(out, p, seed) / "epochs.parquet")) for p in VARIANTS}
        per_seed.append(figures)
        rows += [{"bench": "precision", "seed": seed, "run": p, **f} for p, f in figures.items()]
    return rows + paired(per_seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.bench precision", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--arch", default="shared")
    p.add_argument("--balancer", default="gradnorm")
    p.add_argument("--out", default="results/bench-precision")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config key for both runs")
    p.add_argument("--summarize", action="store_true", help="only print the figures of the runs already in --out")
    args = p.parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for seed in args.seeds:
            train_pair(out, seed, args)
    emit(summarize(out, args.seeds))
    return 0
