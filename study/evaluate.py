"""``python -m study.evaluate CHECKPOINT --split test``: score a trained checkpoint on any split.

The same metric code as training (``trainables.engine.evaluate``: COCO-exact mAP, view accuracy,
...), on the split you name: the data.yaml's own folders (``--split-by folders``) or a seeded
split by patient (``--split-by patient``). Prints a table and, with ``--json``, writes the numbers.

``--best STORAGE/NAME`` picks the study's best finished trial (study/store/selection.py: by
``best.val.objective``, the trial's best epoch) among the multi-task methods (shared, dual), or of
the method ``--method arch/balancer`` names, and scores that trial's best epoch's checkpoint (the
study keeps it: study/tuning/keep_checkpoints.py), with EMA weights when the trial trained with EMA.

Which split seed: a patient split and the synthetic frames both depend on a seed. A checkpoint of a study
carries its own (``data.split_seed``, with ``data.folds``/``data.fold`` and a fingerprint of its test patients:
study/heldout/scoring.py), so it is scored on its own patients wherever it lies, and refused with one line
when the patients rebuilt do not match; a checkpoint from before that uses its study's seed from
``manifest.json`` above it, and a ``study.train`` checkpoint its config's ``train.seed``. ``--split-seed``
overrides (and is refused when it deals other test patients than the checkpoint's).

Jet present, per valve (study/heldout/clinical.py): where the model detects, each valve's threshold is chosen on the
validation split (the Youden point over its clips) and applied to the split scored; per clip and per study, the
counts and sensitivity, specificity, PPV and NPV with 95% Wilson intervals are printed after the scores, and
``--json`` writes them under ``jets`` (the flat ``<split>.jet_*`` keys are in ``metrics`` too).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from study.cli import CHECKPOINT_HELP, ArgumentParser, run_cli
from study.errors import UsageError
from study.heldout.clinical import jet_lines, jet_summary
from study.heldout.scoring import evaluate_state
from study.store.checkpoints import load_checkpoint, study_of, trial_checkpoint
from study.store.selection import best_trials, is_multi_task, parse_method
from study.store.trials import read_trials, write_json_atomic
from trainables.metrics.names import TEST_POOLED
from trainables.wording import counted

SHOWN = TEST_POOLED  # the metrics printed first, in this order (trainables/metrics/names.py)


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", help=CHECKPOINT_HELP)
    p.add_argument("--best", metavar="STORAGE/NAME", help="score the best finished trial of this study instead")
    p.add_argument("--method", default=None, metavar="ARCH/BALANCER",
                   help="with --best: the best trial of this method, e.g. shared/gradnorm, dual, det_only "
                        "(default: the best multi-task trial)")
    p.add_argument("--data", default=None, help="'synthetic' or a data.yaml (default: the checkpoint's own data)")
    p.add_argument("--split", default="test", help="the split to score: train, val or test (default test)")
    p.add_argument("--split-by", choices=["folders", "patient"], default=None,
                   help="the data.yaml's own split folders, or a seeded split by patient (default: as trained)")
    p.add_argument("--split-seed", type=int, default=None, help="seed of the patient split / synthetic frames")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                   help="run the model in fp32 or bf16 autocast (default: the precision it trained at)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the results here")
    return p


# -- finding checkpoints ---------------------------------------------------------------------------
def best_trial(study_dir: Path, method: str | None = None) -> pd.Series:
    """The study's best finished trial by ``best.val.objective`` (its best epoch): of ``method``
    (``arch/balancer``) when given, else the best of the multi-task methods (shared, dual)."""
    path = study_dir / "trials.parquet"
    if not path.is_file():
        raise UsageError(f"--best {study_dir}: no trials.parquet there; give the study folder STORAGE/NAME")
    best = best_trials(read_trials(study_dir), "best.val.objective", "max", k=1, per_method=True)
    if best.empty:
        raise UsageError(f"--best {study_dir}: no finished trial with a validation score to pick from")
    if method is not None:
        chosen = best[best["method"] == parse_method(method)]
        what = f"method {method}"
    else:  # one objective scale: multi-task methods' val.objective is the mean of both tasks' scores
        chosen = best[[is_multi_task(m) for m in best["method"]]]
        what = "multi-task method (shared or dual)"
    if chosen.empty:
        raise UsageError(f"--best {study_dir}: no finished trial of a {what}; the study has "
                         f"{', '.join(best['method'])} (choose one with --method)")
    return chosen.iloc[0]


def print_table(result: dict[str, Any]) -> None:
    split = result["split"]
    print(f"{result['checkpoint']}\n  {result['arch']}/{result['balancer']}, epoch {result['epoch']}"
          f"{' (EMA weights)' if result['ema'] else ''}; {result['data']} split '{split}' by {result['split_by']} "
          f"(seed {result['split_seed']}): {counted(result['images'], 'image')} at {result['imgsz']} px")
    metrics = result["metrics"]
    keys = [f"{split}.{k}" for k in SHOWN if f"{split}.{k}" in metrics]
    jets = f"{split}.jet_"  # printed as their own table below
    keys += sorted(k for k in metrics if k not in keys and not k.startswith(jets))  # per-class AP50, view recalls
    width = max(len(k) for k in keys)
    majority = metrics.get(f"{split}.view_majority_share", math.nan)
    for k in keys:
        v = metrics[k]
        shown = "—" if not math.isfinite(v) else f"{v:.0f}" if k.split(".")[-1].startswith("n_") else f"{v:.4f}"
        if k == f"{split}.view_accuracy" and math.isfinite(majority):  # the chance level it must beat
            shown += f"  (majority view: {majority:.4f})"
        print(f"  {k:<{width}}  {shown}")
    for line in jet_lines(metrics, split, result.get("jet_chosen_on", "")):
        print(line)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.checkpoint is None) == (args.best is None):
        raise UsageError("give either a CHECKPOINT or --best STORAGE/NAME (not both)")
    if args.method and not args.best:
        raise UsageError("--method chooses among a study's trials: use it with --best STORAGE/NAME")
    seed = args.split_seed
    if args.best:
        study_dir = Path(args.best).expanduser()
        trial = best_trial(study_dir, args.method)
        path = trial_checkpoint(study_dir, str(trial["trial_id"]), int(trial["best_epoch"]))
        print(f"best trial: {trial['trial_id']} ({trial['method']}), best.val.objective "
              f"{float(trial['best.val.objective']):.4f} at epoch {trial['best_epoch']}; scoring that epoch's "
              f"checkpoint ({path.parent.name})")
    else:
        path = Path(args.checkpoint).expanduser()
    state = load_checkpoint(path)
    if seed is None and int(state["config"].get("data.split_seed", -1)) < 0:  # recorded: the checkpoint decides
        study = study_of(path)
        if study is not None:
            manifest = json.loads((study / "manifest.json").read_text())
            seed = int(manifest.get("seeds", {}).get("study", manifest.get("settings", {}).get("seed", 0)))
    result = evaluate_state(state, args.split, args.data, args.split_by, seed, args.device, path, args.precision)
    result["jets"] = jet_summary(result["metrics"], args.split)
    print_table(result)
    if args.json:
        write_json_atomic(result, Path(args.json).expanduser())
        print(f"wrote {Path(args.json).expanduser().resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
