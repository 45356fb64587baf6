"""A study's settings (what ``python -m study.run`` was asked) and their checks, before Ray starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from search_spaces import registry as spaces
from study.errors import UsageError


@dataclass
class StudySettings:
    space: str = "gradnorm"
    samples: int = 6
    epochs: int = 5
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    seed: int = 0
    objective: str | None = None  # "single" | "multi" | None (the space's default)
    scheduler: str = "fifo"  # "fifo" | "asha"
    # ASHA's first rung (epochs) and the factor between rungs: a rung ranks trials by their objective at that
    # epoch, so it must come where that ranking predicts the best epoch's (docs/benchmarks.md: the pilot)
    grace_period: int = 1
    reduction_factor: int = 2
    name: str | None = None
    storage: str = "results"
    address: str | None = None
    resume: bool = False
    overwrite: bool = False
    repeat_best: int = 0
    seeds: int = 3
    test: bool = False  # score every --repeat-best re-run on the test split; write headline.parquet
    costs: bool = False  # measure each method's chosen configuration alone (implied by test)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int | None = None  # None: the first free port from 8265 on
    folds: int = 0  # >= 2: K outer patient folds, each a complete study (study/heldout/folds.py)
    methods: list[str] | None = None  # method labels (shared/gradnorm, dual, ...); None: all of the space's
    config: dict[str, Any] = field(default_factory=dict)  # base config keys from the command line
    argv: list[str] = field(default_factory=list)
    verbose: int = 0  # Tune's own console tables; the recorder prints one line per epoch instead
    mlflow: str | None = None  # a tracking URI: the study a parent run, each trial a child (study/tracking/)
    mlflow_experiment: str = "mtl-study"
    # each metric's equivalence margin for the verdict (--margin; study/heldout/margins.py): how its intervals are
    # read, not what is measured, so a --resume may change it (the verdict is rewritten with the new margins)
    margins: dict[str, float] | None = None
    # the verdict's planned comparisons (--against): only the pairs with one of these methods; None: every pair.
    # Like the margins, how the results are read, not what is measured: a --resume may change it
    against: list[str] | None = None
    # --resume across a change of the project's code (study/tuning/resume.py); recorded in that sitting's entry
    # of manifest.json's runs, never compared itself
    allow_code_change: bool = False


def methods_of(s: StudySettings) -> list[dict[str, Any]]:
    """The space's methods, or those ``--methods`` names (a method's search does not depend on the others)."""
    if not s.methods:
        return spaces.methods(s.space)
    return spaces.select_methods(s.space, s.methods, s.config)  # also shared@K/<balancer>; ConfigError: one line


def check_settings(s: StudySettings) -> list[tuple[str, str]]:
    """The study's objectives ``[(metric, mode), ...]``; a UsageError for anything the user can fix."""
    if s.space not in spaces.SPACES:
        raise UsageError(f"--space {s.space!r} is not one of {list(spaces.SPACES)} (see --list-spaces)")
    objectives = spaces.objectives(s.space, s.objective)
    if len(objectives) > 1 and s.scheduler == "asha":
        raise UsageError("--scheduler asha needs one objective: ASHA stops trials by ranking one metric, and a "
                         "multi-objective study has no single ranking; use --scheduler fifo or --objective single")
    labels = [spaces.method_label(m) for m in methods_of(s)]
    methods = len(labels)
    unknown = [m for m in s.against or () if m not in labels]
    if unknown:
        raise UsageError(f"--against {unknown[0]}: not one of the study's methods ({', '.join(labels)}); the verdict "
                         "compares every method with those --against names")
    if s.grace_period < 1 or s.reduction_factor < 2:
        raise UsageError(f"--grace-period {s.grace_period} must be >= 1 and --reduction-factor {s.reduction_factor} "
                         ">= 2 (ASHA keeps 1 / reduction-factor of a rung's trials)")
    if s.scheduler == "asha" and s.grace_period >= s.epochs:
        raise UsageError(f"--grace-period {s.grace_period} with --epochs {s.epochs}: ASHA's first rung must come "
                         "before the last epoch, or it never stops a trial (use --scheduler fifo)")
    if s.samples < 0:
        raise UsageError(f"--samples {s.samples} must be >= 0 (0: no search, each method's default configuration)")
    if s.samples == 0 and s.repeat_best < 1:
        raise UsageError("--samples 0 skips the search: add --repeat-best 1 --seeds N (or --folds K) to train each "
                         "method's default configuration")
    if s.folds and (s.folds < 2 or s.config.get("data.split") != "patient"):
        raise UsageError(f"--folds {s.folds}: folds are whole patients: give --folds K >= 2 with --split patient")
    if s.samples % methods:
        raise UsageError(f"--samples {s.samples}: space {s.space} runs one search per method, so the total must be "
                         f"a multiple of its {methods} methods (e.g. {methods * max(1, round(s.samples / methods))})")
    for name, value, low in (("--epochs", s.epochs, 1),
                             ("--max-concurrent", s.max_concurrent, 1), ("--seeds", s.seeds, 1)):
        if value < low:
            raise UsageError(f"{name} {value} must be at least {low}")
    if s.repeat_best < 0:
        raise UsageError(f"--repeat-best {s.repeat_best} must be >= 0")
    if s.test and s.repeat_best < 1:
        raise UsageError("--test scores the --repeat-best re-runs on the test split: add --repeat-best K "
                         "(e.g. --repeat-best 1 --seeds 3)")
    if s.cpus_per_trial <= 0 or s.gpus_per_trial < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if "://" in s.storage:  # the study's SQLite optuna.db and its atomic Parquet rewrites need a POSIX folder
        raise UsageError(f"--storage {s.storage}: a study's folder must be a file system path (a local folder, or a "
                         "shared one such as NFS mounted at the same place on every node): its Optuna database is "
                         "SQLite and its Parquet files are replaced atomically, which object stores do not offer")
    return objectives
