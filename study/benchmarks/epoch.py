"""Where one epoch's time goes: the pieces of ``engine.fit``'s epoch, timed on real data.

    python -m study.bench epoch [--data ../shared/datasets/regurgitation/data.yaml] [--imgsz 160] [--folds 5]
                                [--fold 0] [--threads 1] [--epochs 2] [--repeats 5] [--set KEY=VALUE ...]

One trial's own training (``engine.fit``, the default ``shared/gradnorm`` configuration unless ``--set`` says
otherwise) on outer fold ``--fold`` of a ``--folds``-fold patient split (split seed 0, the studies' default), with
torch's intra-op threads set to ``--threads`` (a study's CPU trial gets its CPU share). The engine's own functions
are wrapped for the run (timers only: the same calls, arguments and results) to split the last epoch into:

  train.steps         the optimizer steps (``Learner.step``: forward, balanced backward, clip, update)
  train.batches       making the training batches (uint8 -> float, augmentation, mosaic)
  bn_recal            BatchNorm recalibration before validating (its batches included)
  interference        the gradient-interference measurement (trainables/interference.py)
  eval.batches        making the validation batches
  eval.forward        the validation forward passes (what ``evaluate`` spends outside the other eval rows)
  eval.postprocess    decode, threshold, NMS (trainables/postprocess.py)
  eval.metrics        detection, view and per-clip metrics
  checkpoint          ``torch.save`` of the epoch's checkpoint into a fresh folder (what ray_trial.py does before
                      ``tune.report``; Ray Tune then copies that folder into the trial's storage: not timed here)

The first epoch also pays the trial's one-off efficiency figures (parameters, GFLOPs, in-trial latency): the rows are
the last epoch's (``static_efficiency`` in the last row: the first epoch's one-off seconds; with ``--epochs 1`` it is
a row of its own).

Then ``compare`` rows: validation batched larger (``--eval-batches``; ``evaluate`` runs ``max(data.batch, 32)``
images per forward), timed against the engine's own batch in turns (``--repeats`` rounds after one warm-up round,
medians, ratios to the engine's) on the trained model, with the metrics each produced compared key by key: a faster
way counts only if it measures the same numbers (``same_metrics``; ``max_abs_diff`` over every ``val.*`` value).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from study.benchmarks.common import emit, median, round_robin
from study.cli import ArgumentParser, parse_set
from study.errors import UsageError
from trainables.wording import counted

DEFAULT_DATA = "../shared/datasets/regurgitation/data.yaml"
PIECES = ("train.steps", "train.batches", "bn_recal", "interference", "eval.batches", "eval.forward",
          "eval.postprocess", "eval.metrics", "checkpoint")


class Clock:
    """Seconds per piece of the epoch that is running; ``phase`` names the engine call under way."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.phase = "train"

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def timed(self, name: str | None, fn: Callable, phase: str | None = None) -> Callable:
        """``fn`` with its seconds added to ``name`` (None: only the phase changes while it runs)."""
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before, self.phase = self.phase, phase or self.phase
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if name is not None:
                    self.add(name, time.perf_counter() - t0)
                self.phase = before
        return wrapper

    def batches(self, fn: Callable[..., Iterator]) -> Callable[..., Iterator]:
        """``iterate_batches`` whose every ``next`` is added to ``<phase>.batches``."""
        def wrapper(*args: Any, **kwargs: Any) -> Iterator:
            inner = fn(*args, **kwargs)
            name = ("eval" if self.phase == "evaluate" else self.phase) + ".batches"
            while True:
                t0 = time.perf_counter()
                item = next(inner, None)
                self.add(name, time.perf_counter() - t0)
                if item is None:
                    return
                yield item
        return wrapper


@contextlib.contextmanager
def wrapped(clock: Clock) -> Iterator[None]:
    """The engine's pieces wrapped by ``clock`` for the duration (restored after, whatever happens)."""
    from trainables import engine, interference, learner

    patches = [
        (learner.Learner, "step", lambda f: clock.timed("train.steps", f)),
        (engine, "iterate_batches", clock.batches),
        (engine, "recalibrate_batchnorm", lambda f: clock.timed("bn_recal", f, "bn_recal")),
        (engine, "gradient_interference", lambda f: clock.timed("interference", f, "interference")),
        (engine, "evaluate", lambda f: clock.timed("eval", f, "evaluate")),
        (engine, "postprocess", lambda f: clock.timed("eval.postprocess", f)),
        (engine, "detection_metrics", lambda f: clock.timed("eval.metrics", f)),
        (engine, "classification_metrics", lambda f: clock.timed("eval.metrics", f)),
        (engine, "clip_view_metrics", lambda f: clock.timed("eval.metrics", f)),
        (engine, "_static_efficiency", lambda f: clock.timed("static_efficiency", f)),
        (interference, "iterate_batches", clock.batches),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, wrap in patches:
            setattr(owner, name, wrap(getattr(owner, name)))
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def epoch_rows(seconds: dict[str, float], wall: float, checkpoint_mib: float) -> list[dict[str, Any]]:
    """One row per piece (``PIECES``; ``static_efficiency`` too in a trial's first epoch), its seconds and share of
    the epoch's wall time, then what is left over and the epoch itself."""
    s = dict(seconds)
    s["eval.forward"] = s.get("eval", 0.0) - sum(s.get(k, 0.0) for k in ("eval.batches", "eval.postprocess",
                                                                          "eval.metrics"))
    pieces = (*PIECES, "static_efficiency") if s.get("static_efficiency") else PIECES  # a trial's first epoch
    rows = [{"bench": "epoch", "piece": p, "seconds": round(s.get(p, 0.0), 4),
             "share": round(s.get(p, 0.0) / wall, 4)} for p in pieces]
    counted = sum(s.get(p, 0.0) for p in pieces)
    rows.append({"bench": "epoch", "piece": "other", "seconds": round(wall - counted, 4),
                 "share": round((wall - counted) / wall, 4)})
    rows.append({"bench": "epoch", "piece": "epoch", "seconds": round(wall, 4), "share": 1.0,
                 "not_training_s": round(wall - s.get("train.steps", 0.0), 4),
                 "bn_recal.batches": round(s.get("bn_recal.batches", 0.0), 4),
                 "interference.batches": round(s.get("interference.batches", 0.0), 4),
                 "checkpoint_mib": round(checkpoint_mib, 2)})
    return rows


def save_checkpoint(state: dict[str, Any]) -> tuple[float, float]:
    """(seconds, MiB) of writing ``state`` as ray_trial.py does: ``torch.save`` into a fresh temporary folder."""
    from trainables.checkpoint_format import CHECKPOINT_FILE

    with tempfile.TemporaryDirectory(prefix="mtl-bench-ckpt-") as folder:
        path = Path(folder) / CHECKPOINT_FILE
        t0 = time.perf_counter()
        torch.save(state, path)
        seconds = time.perf_counter() - t0
        return seconds, path.stat().st_size / 2**20


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.bench epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help=f"a data.yaml (default {DEFAULT_DATA})")
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--folds", type=int, default=5, help="outer patient folds (default 5)")
    p.add_argument("--fold", type=int, default=0, help="the outer fold held out (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: one CPU trial's share)")
    p.add_argument("--epochs", type=int, default=2, help="epochs to train; the last one is reported (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="rounds of the evaluation comparison (default 5)")
    p.add_argument("--eval-batches", type=int, nargs="*", default=[64, 256],
                   help="validation batch sizes to time against the engine's (default 64 256; none: no comparison)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)")
    return p


def profile_epochs(cfg: Any, data: Any) -> tuple[list[dict[str, Any]], torch.nn.Module]:
    """Train ``cfg`` on ``data`` with the engine's pieces timed; (the last epoch's rows, the trained eval model)."""
    from trainables.engine import fit

    clock = Clock()
    epochs: list[tuple[dict[str, float], float, float]] = []  # per epoch: seconds per piece, wall, checkpoint MB
    start = [time.perf_counter()]

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        seconds, mb = save_checkpoint(state) if state else (0.0, math.nan)
        clock.add("checkpoint", seconds)
        epochs.append((dict(clock.seconds), time.perf_counter() - start[0], mb))
        clock.seconds.clear()
        start[0] = time.perf_counter()

    with wrapped(clock):
        result = fit(cfg, data, report=report)
    if result.status != "finished" or result.model is None:
        raise UsageError(f"the profiled run {result.status}: {result.reason}")
    rows = epoch_rows(*epochs[-1])
    rows[-1]["static_efficiency"] = round(epochs[0][0].get("static_efficiency", 0.0), 4)  # the first epoch's
    return rows, result.model


def largest_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest |a[k] - b[k]| over the numeric values of ``a`` (NaN in both: equal; NaN in one, or a key
    missing from ``b``: inf)."""
    out = 0.0
    for key, x in a.items():
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            continue
        y = b.get(key, math.nan)
        if math.isnan(x) and math.isnan(y):
            continue
        diff = abs(x - y)
        out = max(out, math.inf if math.isnan(diff) else diff)
    return out


def compare_eval_batches(model: torch.nn.Module, data: Any, cfg: Any, batches: list[int],
                         repeats: int) -> list[dict[str, Any]]:
    """``evaluate`` on the validation split at the engine's batch and at each of ``batches``, in turns (one
    warm-up round, ``repeats`` timed rounds): median seconds, ratio to the engine's, and whether every metric
    came out the same."""
    import dataclasses

    from trainables.engine import evaluate

    dev = torch.device("cpu")
    engine_batch = max(cfg.data.batch, 32)  # what evaluate runs with (trainables/engine.py)
    ways = {f"eval batch {engine_batch} (engine)": cfg}
    for b in batches:
        if b != engine_batch:
            ways[f"eval batch {b}"] = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch=b))
    metrics = {name: evaluate(model, data, "val", c, dev) for name, c in ways.items()}
    times = round_robin({name: (lambda c=c: evaluate(model, data, "val", c, dev)) for name, c in ways.items()},
                        repeats, 1, dev)
    reference = next(iter(ways))
    base = median(times[reference])
    rows = []
    for name in ways:
        diff = largest_difference(metrics[reference], metrics[name])
        rows.append({"bench": "epoch", "compare": name, "seconds": round(median(times[name]), 4),
                     "ratio": round(median(times[name]) / base, 3), "same_metrics": diff == 0.0,
                     "max_abs_diff": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not Path(args.data).expanduser().is_file():
        raise UsageError(f"--data {args.data}: no such file; give a data.yaml (the study's real data: {DEFAULT_DATA})")
    if args.epochs < 1 or args.threads < 1:
        raise UsageError("--epochs and --threads must be at least 1")
    from trainables.config import TrialConfig
    from trainables.data.loader import load_data
    from trainables.data.splits import split_seed_of

    torch.set_num_threads(args.threads)
    cfg = TrialConfig.from_partial({
        "arch": "shared", "balancer.name": "gradnorm", "data.source": str(Path(args.data).expanduser().resolve()),
        "data.imgsz": args.imgsz, "data.split": "patient", "data.folds": args.folds, "data.fold": args.fold,
        "train.epochs": args.epochs, "train.device": "cpu", **parse_set(args.set)})
    data = load_data(cfg.data, seed=split_seed_of(cfg.data, 0))
    print(f"data: {', '.join(f'{k}={len(v)}' for k, v in data.splits.items())} images at {data.imgsz} px; "
          f"{counted(torch.get_num_threads(), 'thread')}", flush=True)
    rows, model = profile_epochs(cfg, data)
    emit(rows)
    if args.eval_batches:
        emit(compare_eval_batches(model, data, cfg, args.eval_batches, args.repeats))
    return 0
