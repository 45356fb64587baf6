"""``python -m study.train``: train and evaluate one configuration, without Ray.

For debugging a config, single-task baselines and GPU checks. Writes ``config.json``,
``epochs.parquet`` and ``checkpoint.pt`` (the last epoch; ``best.pt`` the best by val.objective)
into ``--out``.

Named for the command; study/benchmarks/train.py is the benchmark ``bench train``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from study.cli import ArgumentParser, parse_set, resolve_weights, run_cli
from study.store.checkpoints import load_checkpoint, save_checkpoint
from study.store.trials import epochs_table, write_atomic, write_json_atomic
from trainables.checkpoint_format import CHECKPOINT_FILE
from trainables.config import ARCHS, TrialConfig
from trainables.wording import counted

# CLI flag -> TrialConfig key (the flags a person types most; --set reaches every other key)
FLAGS = {
    "arch": "arch", "balancer": "balancer.name", "data": "data.source", "epochs": "train.epochs",
    "imgsz": "data.imgsz", "batch": "data.batch", "size": "model.size", "lr": "optim.lr",
    "device": "train.device", "seed": "train.seed", "optimizer": "optim.name", "split": "data.split",
    "weights": "model.weights",
}
TABLE_COLUMNS = [
    ("epoch", "{:>5.0f}"), ("loss.det", "{:>8.3f}"), ("loss.view", "{:>9.3f}"), ("weight.det", "{:>10.2f}"),
    ("weight.view", "{:>11.2f}"), ("grad.cosine", "{:>11.3f}"), ("val.map50", "{:>9.3f}"), ("val.map", "{:>7.3f}"),
    ("val.view_accuracy", "{:>17.3f}"), ("time.epoch_s", "{:>12.1f}"),
]


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=ARCHS, default="shared")
    p.add_argument("--balancer", default="equal",
                   help="a registered balancer (equal, static, gradnorm, ...) or package.module:ClassName of one")
    p.add_argument("--data", default="synthetic", help="'synthetic' (default) or a data.yaml")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=None, help="image size, a multiple of 32 (default 128)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--size", choices=["n", "s", "custom"], default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default=None)
    p.add_argument("--split", choices=["folders", "patient"], default=None,
                   help="the dataset's own folders, or a seeded split by patient")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key, e.g. --set balancer.alpha=1.5 (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default results/train/ARCH-BALANCER-TIME)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue from a checkpoint.pt")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="initial weights: a checkpoint of this tool, a state_dict or a torchvision weights file, "
                        "matched by name and shape (model.weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrialConfig:
    flat: dict[str, Any] = {}
    for flag, key in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            flat[key] = value
    if flat.get("data.source", "synthetic") != "synthetic":
        flat["data.source"] = str(Path(flat["data.source"]).expanduser().resolve())
    flat.update(parse_set(args.set))
    resolve_weights(flat)
    return TrialConfig.from_partial(flat)


def main(argv: list[str] | None = None) -> int:
    import torch

    from trainables.data.loader import load_data
    from trainables.engine import fit, resolve_device
    from trainables.precision import Numerics

    args = parser().parse_args(argv)
    cfg = config_from_args(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    resume = None
    if args.resume:
        resume = load_checkpoint(args.resume)
        if resume["config"] != cfg.to_flat():
            cfg = TrialConfig.from_flat(resume["config"])
            print("resuming with the checkpoint's config (flags other than --resume/--out are ignored)",
                  file=sys.stderr)
    if resume is not None and int(resume["epoch"]) >= cfg.train.epochs:
        print(f"{args.resume}: this run already finished all {counted(cfg.train.epochs, 'epoch')}; nothing to resume")
        return 0
    out = Path(args.out or f"results/train/{cfg.arch}-{cfg.balancer.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg.to_flat(), out / "config.json")

    t0 = time.perf_counter()
    data = load_data(cfg.data, seed=cfg.train.seed, progress=not args.quiet)
    print(f"data: {len(data.splits['train'])} train / {len(data.splits['val'])} val images at "
          f"{data.imgsz} px, {counted(data.num_classes, 'box class')}, {counted(data.num_views, 'view')} "
          f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    device = resolve_device(cfg.train.device)
    print(Numerics.resolve(cfg.train.precision, cfg.train.memory_format, device).explain(cfg.train.precision),
          file=sys.stderr)
    rows: list[dict[str, Any]] = []
    best = -math.inf
    _print_header()

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        nonlocal best
        rows.append({"trial_id": out.name, **metrics})
        write_atomic(epochs_table(rows), out / "epochs.parquet")
        if state:
            save_checkpoint(state, out / CHECKPOINT_FILE)
            score = metrics.get("val.objective", math.nan)
            if math.isfinite(score) and score > best:
                best = score
                save_checkpoint(state, out / "best.pt")
        _print_row(metrics)

    if resume is not None:
        rows.extend({"trial_id": out.name, **h} for h in resume["history"])
    result = fit(cfg, data, report=report, resume=resume, progress=not args.quiet)
    print(f"status: {result.status}{' — ' + result.reason if result.reason else ''}")
    print(f"wrote {out / 'config.json'}, {out / 'epochs.parquet'}, {out / CHECKPOINT_FILE}")
    return 0 if result.status == "finished" else 1


def _print_header() -> None:
    print(" ".join(f"{name.split('.')[-1]:>{len(fmt.format(0))}}" for name, fmt in TABLE_COLUMNS))


def _print_row(metrics: dict[str, Any]) -> None:
    cells = []
    for name, fmt in TABLE_COLUMNS:
        value = metrics.get(name, math.nan)
        cells.append(fmt.format(value) if isinstance(value, (int, float)) else str(value))
    print(" ".join(cells), flush=True)
    if metrics.get("status") == "diverged":
        print(f"diverged: {metrics.get('reason', '')}", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
