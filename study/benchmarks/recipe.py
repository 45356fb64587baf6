"""Benchmark: does the training recipe learn? Every arm trained on the same data, one table side by side.

    python -m study.bench recipe [--data DATA.yaml] [--train-splits train test] [--epochs 30]
        [--imgsz 320] [--batch 16] [--size n] [--arms det_only cls_only shared/equal shared/gradnorm dual
        shared@2/gradnorm ...]
        [--set KEY=VALUE ...] [--out DIR]

Each arm is ``engine.fit`` (no Ray) on the data loaded once; the row is the arm's best epoch by
its own objective (the study's rule): mAP@.5, mAP@.5:.95, view accuracy, macro-F1 and balanced
accuracy on the validation split, and the arm's training and validation seconds. ``--train-splits``
trains on the union of several folders (the reference protocol for the shared dataset: ``train`` +
``test``, validated on ``valid``). With ``--out`` every arm's epochs land in ``OUT/ARM/epochs.parquet``
and its best weights in ``OUT/ARM/best.pt``. Scores on a folder split whose patients also sit in
the training folders measure memory as much as generalisation: the data loader warns when it sees it.

A second table picks each task's epoch by that task alone, as Ultralytics picks a model's best.pt
(``peer_style``): the rule behind a YOLOv8 detector's and classifier's reported numbers, so that a
comparison with them selects the same way. Both tables select on the split they score (optimistic).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search_spaces.registry import SPLIT_KEY, parse_method
from study.analysis.stats import wilson_interval
from study.benchmarks.common import emit
from study.cli import parse_set, resolve_weights
from study.errors import UsageError
from study.store.checkpoints import save_checkpoint
from study.store.trials import epochs_table, write_atomic
from trainables.config import TrialConfig, fit_balancer
from trainables.data.loader import load_data
from trainables.data.types import DecodedData
from trainables.engine import fit

ARMS = ("det_only", "cls_only", "shared/equal", "shared/gradnorm", "dual")
COSTS = ("eff.shared_units", "eff.params_shared", "eff.params_total", "eff.gflops", "grad.cosine", "time.epoch_s")
COLUMNS = (("val.map50", "mAP@.5"), ("val.map", "mAP@.5:.95"), ("val.view_accuracy", "view acc"),
           ("val.view_macro_f1", "view F1"), ("val.view_balanced_accuracy", "view bal.acc"))


def merge_train(data: DecodedData, splits: list[str]) -> DecodedData:
    """``data`` with its train split replaced by the union of ``splits`` (each image once)."""
    missing = [s for s in splits if s not in data.splits]
    if missing:
        raise UsageError(f"--train-splits {missing}: the data has splits {list(data.splits)}")
    train = np.unique(np.concatenate([data.splits[s] for s in splits]))
    rest = {k: v for k, v in data.splits.items() if k not in splits and k != "train"}
    return dataclasses.replace(data, splits={"train": train, **rest})


def arm_config(arm: str, base: dict[str, Any]) -> TrialConfig:
    """An arm's config: ``arch``, ``shared/<balancer>`` or ``shared@K/<balancer>`` (K shared backbone units)."""
    method = parse_method(arm)
    # a --set balancer key applies to the arms whose balancer has it (fit_balancer drops it for the others), a
    # --set model.shared_stages to the shared arms (the others share nothing to split)
    if method["arch"] != "shared":
        base = {k: v for k, v in base.items() if k != SPLIT_KEY}
    return TrialConfig.from_partial(fit_balancer({**base, **method}))


def prepare(data_source: str, train_splits: list[str], epochs: int, imgsz: int, batch: int, size: str,
            arms: list[str], overrides: dict[str, Any]) -> tuple[dict[str, Any], DecodedData]:
    """The arms' shared config keys and the data they all train and validate on (loaded once); the
    peer benchmark (study/benchmarks/peer.py) trains on exactly these frames and this split."""
    base = {"data.source": data_source, "train.epochs": epochs, "data.imgsz": imgsz, "data.batch": batch,
            "model.size": size, **overrides}
    resolve_weights(base)
    for arm in arms:  # every arm's config, checked before any training: a bad arm is one line at once
        arm_config(arm, base)
    first = arm_config(arms[0], base)
    data = load_data(first.data, seed=first.train.seed, progress=True)
    if train_splits != ["train"]:
        data = merge_train(data, train_splits)
    how = "split by patient: no validation patient is trained on" if first.data.split == "patient" else \
        "split by folders"
    print(f"data: {len(data.splits['train'])} train / {len(data.splits['val'])} val images at {data.imgsz} px ({how})",
          file=sys.stderr, flush=True)
    return base, data


def run(data_source: str, train_splits: list[str], epochs: int, imgsz: int, batch: int, size: str,
        arms: list[str], overrides: dict[str, Any], out: Path | None) -> list[dict[str, Any]]:
    base, data = prepare(data_source, train_splits, epochs, imgsz, batch, size, arms, overrides)
    return train_arms(data, base, arms, epochs, out)


def train_arms(data: DecodedData, base: dict[str, Any], arms: list[str], epochs: int,
               out: Path | None) -> list[dict[str, Any]]:
    """Each arm trained on ``data`` (``engine.fit``, no Ray), one row per arm: its best epoch's scores,
    the peer-style picks and ``epoch_s`` (median seconds of an epoch's training)."""
    rows = []
    for arm in arms:
        cfg = arm_config(arm, base)
        best: dict[str, Any] = {}
        best_state: dict[str, Any] = {}
        history: list[dict[str, Any]] = []

        def report(metrics: dict[str, Any], state: dict[str, Any], history=history, arm=arm) -> None:
            nonlocal best, best_state
            history.append({"trial_id": arm, **metrics})
            if out is not None:  # every epoch: a long run stopped early keeps what it measured
                (out / arm.replace("/", "-")).mkdir(parents=True, exist_ok=True)
                write_atomic(epochs_table(history), out / arm.replace("/", "-") / "epochs.parquet")
            print(f"  {arm} epoch {metrics['epoch']}: " + ", ".join(
                f"{label} {metrics.get(key, math.nan):.3f}" for key, label in COLUMNS) +
                f" ({metrics.get('time.epoch_s', math.nan):.0f}s)", file=sys.stderr, flush=True)
            score = metrics.get("val.objective", math.nan)
            if math.isfinite(score) and score > best.get("val.objective", -math.inf):
                best, best_state = metrics, state

        t0 = time.perf_counter()
        result = fit(cfg, data, report=report)
        seconds = time.perf_counter() - t0
        row = {"bench": "recipe", "arm": arm, "status": result.status, "epochs": epochs,
               "best_epoch": best.get("epoch"), "train_s": round(best.get("time.train_s", math.nan), 1),
               "total_s": round(seconds, 1)}
        row.update({key: round(float(best.get(key, math.nan)), 4) for key, _ in COLUMNS})
        row["view_acc_ci95"] = view_accuracy_interval(row["val.view_accuracy"], len(data.splits["val"]))
        # what the arm costs and how its tasks' gradients meet on what they share (NaN: nothing shared)
        row.update({key: float(best.get(key, math.nan)) for key in COSTS})
        row["peer_style"] = peer_style(history)
        row["epoch_s"] = round(float(np.median([m.get("time.epoch_s", math.nan) for m in history])), 2) \
            if history else math.nan
        rows.append(row)
        if out is not None and best_state:
            save_checkpoint(best_state, out / arm.replace("/", "-") / "best.pt")
    return rows


def peer_style(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Each task's best epoch chosen by that task's own validation score, as Ultralytics keeps best.pt:
    a detector by its fitness 0.1 mAP@.5 + 0.9 mAP@.5:.95, a classifier by top-1 (its fitness is
    (top-1 + top-5) / 2, and with three views top-5 is always 1). Ties go to the later epoch, as there
    (its trainer rewrites best.pt whenever an epoch's fitness equals the best so far). NaN where the arm
    has no such task."""
    def pick(score: Any) -> dict[str, Any] | None:
        scored = [(score(m), m["epoch"], m) for m in history if math.isfinite(score(m))]
        return max(scored, key=lambda s: s[:2])[2] if scored else None

    det = pick(lambda m: 0.1 * m.get("val.map50", math.nan) + 0.9 * m.get("val.map", math.nan))
    view = pick(lambda m: m.get("val.view_accuracy", math.nan))
    return {"det_epoch": det["epoch"] if det else None,
            "det.map50": round(float(det["val.map50"]), 4) if det else math.nan,
            "det.map": round(float(det["val.map"]), 4) if det else math.nan,
            "view_epoch": view["epoch"] if view else None,
            "view.accuracy": round(float(view["val.view_accuracy"]), 4) if view else math.nan}


def view_accuracy_interval(accuracy: float, n: int) -> list[float]:
    """The 95% Wilson interval of a view accuracy on ``n`` validation frames (every scored frame has
    a view: load_data skips or refuses frames without one), rounded; NaNs for an arm without a view."""
    if not math.isfinite(accuracy):
        return [math.nan, math.nan]
    return [round(v, 3) for v in wilson_interval(round(accuracy * n), n)]


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'arm':<16}" + "".join(f"{label:>13}" for _, label in COLUMNS) + f"{'view acc 95% CI':>18}"
              f"{'best ep':>9}{'train s':>9}")
    print(header)
    for r in rows:
        cells = "".join(f"{'—' if not math.isfinite(r[k]) else format(r[k], '.3f'):>13}" for k, _ in COLUMNS)
        low, high = r["view_acc_ci95"]
        interval = "—" if not math.isfinite(low) else f"[{low:.3f}, {high:.3f}]"
        print(f"{r['arm']:<16}{cells}{interval:>18}{r['best_epoch'] or '—':>9}{r['train_s']:>9}")
    if any(math.isfinite(r["view_acc_ci95"][0]) for r in rows):
        print("view acc 95% CI: Wilson interval over the validation frames -- how far the accuracy can move by "
              "chance alone on a set this size")
    print("\neach task's epoch picked by that task alone, as Ultralytics keeps best.pt (detector: 0.1 mAP@.5 + "
          "0.9 mAP@.5:.95; classifier: top-1) -- the rule behind a YOLOv8 peer's reported numbers")
    print(f"{'arm':<16}{'mAP@.5':>13}{'mAP@.5:.95':>13}{'det ep':>8}{'view acc':>13}{'view ep':>9}")
    for r in rows:
        p = r["peer_style"]
        cells = [f"{'—' if not math.isfinite(p[k]) else format(p[k], '.3f'):>13}" for k in ("det.map50", "det.map")]
        view = "—" if not math.isfinite(p["view.accuracy"]) else f"{p['view.accuracy']:.3f}"
        print(f"{r['arm']:<16}{''.join(cells)}{p['det_epoch'] or '—':>8}{view:>13}{p['view_epoch'] or '—':>9}")


def add_run_arguments(p: argparse.ArgumentParser, arms: tuple[str, ...] = ARMS) -> None:
    """The data, budget and arm flags this benchmark and ``bench peer`` share (both train on ``prepare``'s data)."""
    p.add_argument("--data", default="synthetic")
    p.add_argument("--train-splits", nargs="+", default=["train"], help="folders trained on together")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--arms", nargs="+", default=list(arms), metavar="ARM",
                   help=f"{' '.join(ARMS)}, or a shared arm at a split, shared@K/<balancer> "
                        f"(default: {' '.join(arms)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.bench recipe", description=__doc__.split("\n\n")[0])
    add_run_arguments(p)
    p.add_argument("--size", default="n", choices=["n", "s"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for each arm's epochs.parquet and best.pt")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    source = args.data if args.data == "synthetic" else str(Path(args.data).expanduser().resolve())
    out = Path(args.out).expanduser().resolve() if args.out else None
    rows = run(source, args.train_splits, args.epochs, args.imgsz, args.batch, args.size, args.arms,
               parse_set(args.set), out)
    emit(rows)
    print_table(rows)
    return 0
