"""``python -m study.run --space gradnorm``: a hyperparameter study on Ray Tune with Optuna.

With no other flags it runs a small study on the synthetic default on this machine's CPUs and
ends with a table of the best trials and the paths of its Parquet results.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from study.cli import ArgumentParser, parse_set, resolve_weights, run_cli
from study.errors import UsageError
from trainables.config import TrialConfig

if TYPE_CHECKING:
    from study.tuning.settings import StudySettings


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="gradnorm", help="search space (see --list-spaces)")
    p.add_argument("--list-spaces", action="store_true", help="print the search spaces and exit")
    p.add_argument("--methods", default=None, metavar="M1,M2",
                   help="only these methods of a multi-method space, e.g. shared/gradnorm,dual (default all)")
    p.add_argument("--samples", type=int, default=6,
                   help="number of trials (default 6; with --folds: per fold); 0: no search, each method's default "
                        "configuration is re-run and scored")
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractional GPUs share a device, e.g. 0.25")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", choices=["single", "multi"], default=None,
                   help="single: 0.5*val mAP@.5:.95 + 0.5*view accuracy; multi: quality vs training seconds "
                        "(default: the space's own)")
    p.add_argument("--scheduler", choices=["fifo", "asha"], default="fifo")
    p.add_argument("--grace-period", type=int, default=1, metavar="EPOCHS",
                   help="ASHA's first rung: the epoch at which trials are first ranked (default 1)")
    p.add_argument("--reduction-factor", type=int, default=2, metavar="F",
                   help="ASHA keeps 1/F of a rung's trials for the next, F times later (default 2)")
    p.add_argument("--data", default="synthetic", help="'synthetic' (default) or a data.yaml")
    p.add_argument("--split", choices=["folders", "patient"], default="folders",
                   help="the dataset's own folders, or a seeded split by patient (recommended for real data)")
    p.add_argument("--folds", type=int, default=0, metavar="K",
                   help="with --split patient: K outer patient folds, each a complete study scored on its own "
                        "patients; writes folds.parquet, headline.parquet and verdict.parquet "
                        "(implies --test --repeat-best 1)")
    p.add_argument("--imgsz", type=int, default=None, help="image size, multiple of 32 (default 128)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any base config key")
    p.add_argument("--name", default=None, help="study name (default SPACE-TIME)")
    p.add_argument("--storage", default="results", help="folder that holds studies (default results/)")
    p.add_argument("--address", default=None, help="connect to a running Ray cluster instead of starting one")
    p.add_argument("--resume", action="store_true", help="continue the study --name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing study --name")
    p.add_argument("--allow-code-change", action="store_true",
                   help="with --resume: go on although the project's code changed since the study last ran (another "
                        "commit, or other uncommitted changes); a warning, and recorded in manifest.json's runs")
    p.add_argument("--margin", action="append", default=[], metavar="METRIC=VALUE",
                   help="the verdict's equivalence margin for a metric, e.g. map50=0.05 or cost.train_step_ms=1.1 "
                        "(repeatable; defaults and why: study/heldout/margins.py); recorded in manifest.json")
    p.add_argument("--against", default=None, metavar="M1,M2",
                   help="the verdict's planned comparisons: every method against these (e.g. shared/gradnorm,"
                        "shared/equal), and Holm's correction over those pairs only (default: every pair of methods); "
                        "recorded in manifest.json")
    p.add_argument("--repeat-best", type=int, default=None, metavar="K",
                   help="re-run the K best configs ... (default 0; 1 with --folds)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="... with N seeds each")
    p.add_argument("--test", action="store_true",
                   help="after --repeat-best: score every re-run once on the test split (held-out patients with "
                        "--split patient), measure each method's chosen config alone, write headline.parquet")
    p.add_argument("--costs", action="store_true",
                   help="after the search: time each method's best config alone on an idle worker (costs.parquet); "
                        "implied by --test")
    p.add_argument("--dashboard-host", default="127.0.0.1",
                   help="address the Ray dashboard of a new local instance listens on (default 127.0.0.1: this "
                        "machine only; anything else is a warning, see docs/security.md)")
    p.add_argument("--dashboard-port", type=int, default=None, metavar="PORT",
                   help="port of that dashboard (default: the first free one from 8265 on, printed at the start)")
    p.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                   help="log the study to MLflow: a parent run, one child run per trial (pip install -e "
                        "\".[mlflow]\"); URI of your tracking server, or MLFLOW_TRACKING_URI when left out")
    p.add_argument("--mlflow-experiment", default="mtl-study", metavar="NAME",
                   help="the MLflow experiment the study's run goes in (default mtl-study)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list_spaces:
        from search_spaces import registry

        for name in registry.SPACES:
            space = registry.load(name)
            print(f"{name:<10} {space.DESCRIPTION} [objective: {space.DEFAULT_OBJECTIVE}]")
        return 0
    from study.heldout.folds import run_folds
    from study.heldout.margins import parse_margins
    from study.tracking.mlflow_study import resolve_uri
    from study.tuning.phases import run_study
    from study.tuning.session import JOB_ENV, job_address, settle_in_job
    from study.tuning.settings import StudySettings

    if args.folds:
        args.test = True
        args.repeat_best = 1 if args.repeat_best is None else args.repeat_best
    args.repeat_best = 0 if args.repeat_best is None else args.repeat_best
    config = {"train.epochs": args.epochs, "train.seed": args.seed, "data.split_seed": args.seed,
              "data.split": args.split,
              "data.source": args.data if args.data == "synthetic" else str(Path(args.data).expanduser().resolve())}
    if args.imgsz is not None:
        config["data.imgsz"] = args.imgsz
    if args.folds >= 2:  # fewer is check_settings' one line, which names the flag (not the config key)
        config.update({"data.folds": args.folds, "data.fold": 0})
    config.update(parse_set(args.set))
    resolve_weights(config)
    from search_spaces import registry

    if args.space in registry.SPACES:  # (an unknown space is check_settings' one-line error)
        # a bad key or value stops here, before Ray starts; a balancer key must be one of the space's balancers'
        registry.base_config(args.space, config)
        balancers = {m["balancer.name"] for m in registry.methods(args.space)}
        if len(balancers) == 1:  # the space's balancer: its keys are valid keys of the study's base config
            config["balancer.name"] = balancers.pop()
    else:
        TrialConfig.from_partial(config)
    settings = StudySettings(
        space=args.space, samples=args.samples, epochs=args.epochs, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, seed=args.seed,
        objective=args.objective, scheduler=args.scheduler, grace_period=args.grace_period,
        reduction_factor=args.reduction_factor, name=args.name, storage=args.storage,
        address=args.address or job_address(dict(os.environ)),
        resume=args.resume, overwrite=args.overwrite, repeat_best=args.repeat_best,
        seeds=args.seeds, test=args.test, costs=args.costs, folds=args.folds, dashboard_host=args.dashboard_host,
        dashboard_port=args.dashboard_port, mlflow=resolve_uri(args.mlflow, dict(os.environ)),
        mlflow_experiment=args.mlflow_experiment, margins=parse_margins(args.margin),
        against=args.against.split(",") if args.against else None,
        allow_code_change=args.allow_code_change,
        methods=args.methods.split(",") if args.methods else None,
        config=config, argv=list(sys.argv[1:] if argv is None else argv),
    )
    if JOB_ENV in os.environ and "://" not in args.storage:  # (an object-store URI: check_settings' one line)
        if not Path(args.storage).expanduser().is_absolute():
            raise UsageError(f"--storage {args.storage}: a Ray job runs in a temporary copy of its working directory, "
                             "which is deleted after the job; give an absolute path every node can reach (a shared "
                             "folder), e.g. --storage /mnt/shared/studies")
        try:
            settle_in_job(str(Path(args.storage).expanduser()), mlflow=args.mlflow is not None)
        except OSError as err:
            raise UsageError(f"--storage {args.storage}: cannot write there ({err.strerror or err})") from None
    from study.store.folder import current_study, discard_unstarted, was_started

    try:
        (run_folds if settings.folds else run_study)(settings)  # a folds study is a loop over the ordinary one
    except KeyboardInterrupt:  # Ctrl-C: the whole study stops, every phase (study/tuning/interrupt.py)
        end_tracking(settings, "KILLED")
        print(interrupted(settings.name or getattr(current_study(), "name", None), was_started()), file=sys.stderr)
        return 130
    except BaseException:
        end_tracking(settings, "FAILED")
        raise
    finally:
        discard_unstarted()  # a start that failed before any trial could run leaves nothing to block a re-run
    return 0


def end_tracking(settings: StudySettings, status: str) -> None:
    """The study's MLflow parent run, when this command opened one and did not finish it, marked ``status``."""
    if settings.mlflow:
        from study.tracking.mlflow_study import end_unfinished

        end_unfinished(status)


def interrupted(name: str | None, started: bool) -> str:
    """What Ctrl-C left: a study to resume (each phase saved what it finished), or nothing at all."""
    if not started:
        return "interrupted before any trial ran: nothing was kept; run the same command again"
    return (f"interrupted: the study stopped; what it finished is kept — continue it with the same command and "
            f"--resume --name {name}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
