"""Benchmark: what Ray Tune costs around the trials, and whether concurrent trials share the dataset.

    python -m study.bench study [--samples 6] [--epochs 5] [--concurrent 2] [--space gradnorm]
                                [--set KEY=VALUE ...] [--memory-train 4000] [--memory-imgsz 128]
                                [--memory-concurrent 1 2] [--skip-overhead] [--skip-memory] [--keep]

The defaults are those of ``python -m study.run`` (6 trials x 5 epochs, 2 concurrent), so the
overhead row measures the default study (Ray's start-up and each trial's set-up weigh less in
longer studies).

Real studies (``study.run.main``, in this process, synthetic data, into a temporary --storage),
all in one local Ray instance that this benchmark starts first, so that Ray's start-up is timed
on its own. Progress goes to stderr; each study's own output to ``NAME.log`` next to its folder.

Row ``overhead`` (one study with the given settings):
  ray_init_s       ``ray.init`` (with the dashboard, as ``study.run`` does), before the study
  study_s          ``study.run.main`` from call to return: driver decode, Tuner, trials, summary
  wall_s           ray_init_s + study_s
  data_s           decoding the dataset in the driver (timed apart, on an identical call)
  compute_s        sum over trials of ``time.total_s`` from trials.parquet (the engine's train +
                   validation seconds; not model building, efficiency probes, checkpoints)
  concurrency      min(--concurrent, --samples, Ray CPUs // --cpus-per-trial)
  efficiency       compute_s / (wall_s * concurrency): 1.0 = the slots did nothing but trial compute
  overhead_s       wall_s - compute_s / concurrency: wall seconds not explained by trial compute
  overhead_frac    overhead_s * concurrency / compute_s: slot-seconds lost per second of compute
                   (the issue's target: <= 0.10); ``*_excl_ray_init`` the same without Ray's start-up
  trial_actor_s    sum of the trial processes' lifetimes (``ray::ImplicitFunc``, sampled every
                   0.25 s); trial_actor_s - compute_s is work inside the trials outside the engine's
                   clock (worker start, imports, fetching the dataset, model build, checkpoints)

Rows ``memory`` (``--memory-concurrent`` studies of N trials x 1 epoch, all N at once, on
``data.synthetic_train=--memory-train`` images at ``--memory-imgsz`` px, plus one baseline study
of 1 trial on ``BASELINE_TRAIN`` = 64 training images): every 0.5 s, per trial process, ``/proc/PID/smaps_rollup``
(Rss, Pss, USS = Private_Clean + Private_Dirty) and, from ``/proc/PID/smaps``, the Rss and Pss
of its mappings of Ray's object store (``/dev/shm/plasma*``: where ``tune.with_parameters`` puts
the decoded dataset). Figures are the peaks over samples of sums/means over the trials alive:
  dataset_mib          the decoded dataset's bytes (images + labels; timed decode apart)
  store_rss_max_mib    object-store pages one trial maps (read in place, never copied)
  store_rss_sum_mib    the same summed over trials: what per-process accounting would charge
  store_pss_sum_mib    object-store Pss summed over trials (shared pages split between mappers)
  uss_mean_mib         private memory per trial (model, activations, torch itself; a private
                       copy of the dataset would land here)
  private_data_mib     uss_mean_mib minus the baseline study's: private memory that grows with
                       the dataset, per trial (about 0 when the trials read it in place)
  data_memory_mib      store_rss_max_mib + N * max(0, private_data_mib): the dataset's bytes
                       resident across the N trials, shared pages counted once
  ratio_to_one_copy    data_memory_mib / dataset_mib (the issue's target: <= 1.2)
  rss_sum_mib, pss_sum_mib, uss_sum_mib   whole trial processes, for comparison with ``top``
The driver holds its own decoded array besides the object store's copy; neither is a trial's.

Named for its subcommand (``python -m study.bench study`` imports ``study.benchmarks.study``), hence the name it
shares with the study package.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.benchmarks.common import emit
from study.cli import ArgumentParser
from study.tuning.processes import descendants
from study.tuning.settings import StudySettings

TRIAL_PROCESS = "ray::ImplicitFunc"  # Tune's function trainable actor: one process per running trial
STORE_MAPPING = "plasma"  # Ray's shared-memory object store file (/dev/shm/plasma followed by a random suffix)
KIB_PER_MIB = 1024
BASELINE_TRAIN = 64  # training images of the memory baseline study


# -- the trial processes, sampled from /proc ----------------------------------------------------------
def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def memory_kib(pid: int) -> dict[str, int] | None:
    """Rss, Pss, Uss of a process and Rss/Pss of its object-store mappings, in KiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            rollup = f.read()
        with open(f"/proc/{pid}/smaps") as f:
            smaps = f.read()
    except OSError:
        return None
    fields = {}
    for line in rollup.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            fields[parts[0].rstrip(":")] = int(parts[1])
    store_rss = store_pss = 0
    in_store = False
    for line in smaps.splitlines():
        parts = line.split()
        if not parts:
            continue
        if not parts[0].endswith(":"):  # a mapping's header: "start-end perms offset dev inode [path]"
            in_store = len(parts) >= 6 and STORE_MAPPING in parts[5]
        elif in_store and parts[0] == "Rss:":
            store_rss += int(parts[1])
        elif in_store and parts[0] == "Pss:":
            store_pss += int(parts[1])
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            "store_rss": store_rss, "store_pss": store_pss}


@dataclass
class TrialProcesses:
    """Watches this process's ``ray::ImplicitFunc`` descendants from a background thread: when each
    was first and last seen and, with ``memory``, their memory at every sample."""

    period: float = 0.25
    memory: bool = False
    first_seen: dict[int, float] = field(default_factory=dict)
    last_seen: dict[int, float] = field(default_factory=dict)
    samples: list[dict[int, dict[str, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        root = os.getpid()
        while not self._stop.is_set():
            now = time.perf_counter()
            sample = {}
            for pid in descendants(root):
                if not command_line(pid).startswith(TRIAL_PROCESS):
                    continue
                self.first_seen.setdefault(pid, now)
                self.last_seen[pid] = now
                if self.memory and (mem := memory_kib(pid)) is not None:
                    sample[pid] = mem
            if sample:
                self.samples.append(sample)
            self._stop.wait(self.period)

    def __enter__(self) -> TrialProcesses:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def lifetimes_s(self) -> float:
        return sum(self.last_seen[pid] - self.first_seen[pid] for pid in self.first_seen)

    def peaks_mib(self) -> dict[str, float]:
        """Peak over samples of each aggregate over the trial processes alive at that sample."""
        out: dict[str, float] = {"processes_max": 0}
        for sample in self.samples:
            values = list(sample.values())
            aggregates = {
                "processes_max": len(values),
                "rss_sum_mib": sum(v["rss"] for v in values) / KIB_PER_MIB,
                "pss_sum_mib": sum(v["pss"] for v in values) / KIB_PER_MIB,
                "uss_sum_mib": sum(v["uss"] for v in values) / KIB_PER_MIB,
                "uss_mean_mib": sum(v["uss"] for v in values) / len(values) / KIB_PER_MIB,
                "store_rss_max_mib": max(v["store_rss"] for v in values) / KIB_PER_MIB,
                "store_rss_sum_mib": sum(v["store_rss"] for v in values) / KIB_PER_MIB,
                "store_pss_sum_mib": sum(v["store_pss"] for v in values) / KIB_PER_MIB,
            }
            for key, value in aggregates.items():
                out[key] = max(out.get(key, 0.0), value)
        return {k: round(v, 1) for k, v in out.items()}


# -- running studies ------------------------------------------------------------------------------------
def start_ray() -> float:
    """Start a fresh local Ray instance the way ``study.run`` does; returns the seconds it took."""
    import ray

    t0 = time.perf_counter()
    # address="local": always a new instance of our own, never a cluster someone else started here
    ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    return time.perf_counter() - t0


def ray_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def run_study(storage: Path, name: str, args: list[str]) -> tuple[float, Path]:
    """``study.run.main`` into ``storage/name``, its output to ``storage/name.log``; (seconds, study folder)."""
    from study.run import main as study_main

    log = storage / f"{name}.log"
    argv = [*args, "--storage", str(storage), "--name", name]
    print(f"bench study: running `python -m study.run {' '.join(argv)}` (log: {log})", file=sys.stderr, flush=True)
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        t0 = time.perf_counter()
        code = study_main(argv)
        seconds = time.perf_counter() - t0
    if code:
        raise RuntimeError(f"study {name} exited with {code}; see {log}")
    return seconds, storage / name


def trials_compute(study_dir: Path) -> tuple[float, int, dict[str, int]]:
    """(sum of time.total_s, number of trials, trials per status) from trials.parquet."""
    from study.store.trials import read_trials

    trials = read_trials(study_dir)
    total = trials["time.total_s"].fillna(0.0).sum() if "time.total_s" in trials else 0.0
    return float(total), len(trials), {str(k): int(v) for k, v in trials["status"].value_counts().items()}


def dataset(settings: dict[str, Any], seed: int) -> tuple[float, float]:
    """(seconds to decode, MiB of the decoded arrays) for a config, decoded here and dropped."""
    from trainables.config import TrialConfig
    from trainables.data.loader import load_data

    t0 = time.perf_counter()
    data = load_data(TrialConfig.from_partial(settings).data, seed=seed)
    seconds = time.perf_counter() - t0
    nbytes = data.images.nbytes + data.boxes.nbytes + data.views.nbytes
    return seconds, nbytes / 2**20


def study_settings(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """The base config keys the study will use (as ``study.run`` builds them), for the timed decode."""
    from study.cli import parse_set

    settings: dict[str, Any] = {"train.seed": args.seed}
    if args.imgsz is not None:
        settings["data.imgsz"] = args.imgsz
    settings.update(parse_set([*args.set, *extra]))
    return settings


def common_args(args: argparse.Namespace) -> list[str]:
    out = ["--space", args.space, "--seed", str(args.seed), "--cpus-per-trial", str(args.cpus_per_trial)]
    if args.imgsz is not None:
        out += ["--imgsz", str(args.imgsz)]
    for item in args.set:
        out += ["--set", item]
    return out


def overhead_row(args: argparse.Namespace, storage: Path, ray_init_s: float) -> dict[str, Any]:
    data_s, data_mib = dataset(study_settings(args, []), args.seed)
    argv = [*common_args(args), "--samples", str(args.samples), "--epochs", str(args.epochs),
            "--max-concurrent", str(args.concurrent)]
    with TrialProcesses(period=0.25) as procs:
        study_s, study_dir = run_study(storage, "overhead", argv)
    compute, n_trials, statuses = trials_compute(study_dir)
    concurrency = max(1, min(args.concurrent, args.samples, int(ray_cpus() // args.cpus_per_trial)))
    wall = ray_init_s + study_s
    overhead = wall - compute / concurrency
    without_init = overhead - ray_init_s

    def frac(seconds: float) -> float | None:
        return round(seconds * concurrency / compute, 3) if compute > 0 else None

    return {
        "bench": "study", "row": "overhead", "space": args.space, "samples": args.samples, "epochs": args.epochs,
        "concurrency": concurrency, "trials": n_trials, "status": statuses,
        "ray_init_s": round(ray_init_s, 2), "study_s": round(study_s, 2), "wall_s": round(wall, 2),
        "data_s": round(data_s, 2), "dataset_mib": round(data_mib, 1), "compute_s": round(compute, 2),
        "efficiency": round(compute / (wall * concurrency), 3),
        "overhead_s": round(overhead, 2), "overhead_frac": frac(overhead),
        "overhead_s_excl_ray_init": round(without_init, 2), "overhead_frac_excl_ray_init": frac(without_init),
        "trial_actor_s": round(procs.lifetimes_s(), 2),
        "in_trial_outside_engine_s": round(procs.lifetimes_s() - compute, 2),
    }


def memory_rows(args: argparse.Namespace, storage: Path) -> list[dict[str, Any]]:
    size = args.memory_imgsz
    base = ["--space", args.space, "--seed", str(args.seed), "--cpus-per-trial", str(args.cpus_per_trial),
            "--imgsz", str(size), "--epochs", "1"]
    for item in args.set:
        base += ["--set", item]
    arms = [("baseline", 1, BASELINE_TRAIN)] + [("large", n, args.memory_train) for n in args.memory_concurrent]
    sizes: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    baseline_uss = math.nan
    for label, n, train in arms:
        extra = [f"data.synthetic_train={train}"]  # after the --set items: it wins
        settings = {**study_settings(args, extra), "data.imgsz": size}
        if label not in sizes:
            sizes[label] = dataset(settings, args.seed)[1]
        argv = [*base, "--set", extra[0], "--samples", str(n), "--max-concurrent", str(n)]
        with TrialProcesses(period=0.5, memory=True) as procs:
            study_s, _ = run_study(storage, f"memory-{label}-{n}", argv)
        peaks = procs.peaks_mib()
        row: dict[str, Any] = {"bench": "study", "row": "memory", "arm": label, "concurrent": n, "imgsz": size,
                               "train_images": train, "dataset_mib": round(sizes[label], 1),
                               "study_s": round(study_s, 1), "samples_taken": len(procs.samples), **peaks}
        if label == "baseline":
            baseline_uss = peaks.get("uss_mean_mib", math.nan)
        else:
            private = peaks.get("uss_mean_mib", math.nan) - baseline_uss
            resident = peaks.get("store_rss_max_mib", 0.0) + n * max(0.0, private)
            row.update({"private_data_mib": round(private, 1), "data_memory_mib": round(resident, 1),
                        "ratio_to_one_copy": round(resident / sizes[label], 3)})
        emit([row])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m study.bench study", description=__doc__.split("\n\n")[0])
    defaults = StudySettings()  # the overhead row measures the default study unless told otherwise
    p.add_argument("--samples", type=int, default=defaults.samples)
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--concurrent", type=int, default=defaults.max_concurrent, help="--max-concurrent of the study")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--space", default="gradnorm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--imgsz", type=int, default=None, help="image size of the overhead study (default: study's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every study")
    p.add_argument("--memory-train", type=int, default=4000, help="training images of the memory studies")
    p.add_argument("--memory-imgsz", type=int, default=128)
    p.add_argument("--memory-concurrent", type=int, nargs="+", default=[1, 2])
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the studies' folder (printed) instead of deleting it")
    args = p.parse_args(argv)
    if not Path("/proc/self/smaps_rollup").exists() and not args.skip_memory:
        p.error("the memory rows read /proc/PID/smaps_rollup (Linux >= 4.14); use --skip-memory elsewhere")

    import ray

    storage = Path(tempfile.mkdtemp(prefix="mtl-bench-study-"))
    try:
        ray_init_s = start_ray()
        emit([{"bench": "study", "row": "ray", "ray": ray.__version__, "ray_init_s": round(ray_init_s, 2),
               "cpus": ray_cpus(), "storage": str(storage)}])
        if not args.skip_overhead:
            emit([overhead_row(args, storage, ray_init_s)])
        if not args.skip_memory:
            memory_rows(args, storage)
    finally:
        ray.shutdown()
        if args.keep:
            print(f"bench study: studies kept in {storage}", file=sys.stderr)
        else:
            shutil.rmtree(storage, ignore_errors=True)
    return 0
