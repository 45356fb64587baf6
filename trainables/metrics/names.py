"""Every key of the engine's epoch dict, declared once: what the engine writes, and what the recorder,
the Parquet files and the report read. Imports nothing heavy (the Ray-free engine and the study both use it).

One ``Metric`` per key, or per family of keys named from the data (``val.ap50_<class>``: one key per
detection class, every key that starts with ``val.ap50_``):
  group      what it measures: run (position and state), loss, weight, grad, val, time, eff. ``GROUPS``
             says how trials.parquet summarises a group: ``best``/``last`` (the best and the last scored
             epoch's value: columns ``best.<key>`` for a validation score, ``at_best.<key>`` for a loss,
             weight or gradient, and ``last.<key>``; ``best_column``) or ``static`` (the last scored
             epoch's value, column ``<key>``); run keys stay in epochs.parquet only.
  label      how reports name it.
  headline   every epoch report carries it, NaN when a run ends early (``engine.failure_metrics``):
             searchers and schedulers may optimise any of them, and the report compares methods on all.
  direction  "max" / "min" where it is an objective or compared: better is higher / lower.
  test       "pooled": re-scored on the held-out test split (``test.<name>``, the key without ``val.``)
             and pooled per method in headline.parquet; "shown": also in the held-out table and console, and
             compared in the verdict. A family marked so is pooled (compared) for each member a study's
             test_runs.parquet holds (``held_out``).

The ``clinical`` group (trainables/metrics/clinical.py: jet present per valve, per clip and per study, at a
threshold chosen on validation) is scored where a checkpoint is scored on a split (study/heldout/scoring.py:
``study.evaluate``, the held-out re-runs), not at every training epoch: the engine never writes it, so it is in
neither epochs.parquet nor trials.parquet, and the verdict compares it in a Holm family of its own.

epochs.parquet keeps every registered key of a report and nothing else (study/store/trials.py: ``epoch_row``);
the order of ``REGISTRY`` is the order of headline.parquet's columns and of the report's panels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BEST_LAST, STATIC = "best_last", "static"
AT_BEST = "at_best"  # the prefix of a non-score value at the best epoch (``best_column``)
GROUPS = {
    "run": "",
    "loss": BEST_LAST,
    "weight": BEST_LAST,
    "grad": BEST_LAST,
    "val": BEST_LAST,
    "time": STATIC,
    "eff": STATIC,
    "clinical": "",  # scored on a split with a validation-chosen threshold, never per epoch (see above)
}
FAMILY = "<"  # a key containing "<...>" names a family: every key starting with the part before it
OBJECTIVE = "val.objective"  # the study's default objective (engine.objective) and what ranks a trial's epochs
TASK_SCORE = {"det": "val.map", "view": "val.view_accuracy"}  # each task's score: the objective's terms, Δm's


@dataclass(frozen=True)
class Metric:
    key: str
    group: str
    label: str
    headline: bool = False
    direction: str = ""  # "max" | "min" | ""
    test: str = ""  # "" | "pooled" | "shown"

    @property
    def summary(self) -> str:
        """How trials.parquet carries it: ``BEST_LAST``, ``STATIC`` or "" (not at all)."""
        return GROUPS[self.group]


def _declare(*metrics: Metric) -> dict[str, Metric]:
    for m in metrics:
        if m.group not in GROUPS or m.direction not in ("", "max", "min") or m.test not in ("", "pooled", "shown"):
            raise ValueError(f"metric {m.key}: unknown group, direction or test ({m})")
    return {m.key: m for m in metrics}


REGISTRY: dict[str, Metric] = _declare(
    Metric("epoch", "run", "epoch"),
    Metric("step", "run", "optimizer step"),
    Metric("status", "run", "status"),  # running | finished | diverged | error | oom
    Metric("reason", "run", "reason"),  # why a run ended early ("" when it did not)
    Metric("resumed_from_epoch", "run", "resumed from epoch"),  # the checkpoint epoch it continued from (0: fresh)
    Metric("lr", "run", "learning rate"),  # the trunk's and detector's rate at the epoch's last step
    Metric("lr_cls", "run", "view head learning rate"),
    # epoch means of the training loss parts (means over steps, not × batch)
    Metric("loss.box", "loss", "loss: box"),
    Metric("loss.obj", "loss", "loss: objectness"),
    Metric("loss.cls", "loss", "loss: det. class"),
    Metric("loss.det", "loss", "loss: detection"),
    Metric("loss.view", "loss", "loss: view"),
    # epoch means of the task weights the balancer used
    Metric("weight.det", "weight", "weight: detection"),
    Metric("weight.view", "weight", "weight: view"),
    # interference on the shared trunk, on fixed batches (trainables/interference.py)
    Metric("grad.cosine", "grad", "gradient cosine"),
    Metric("grad.norm_det", "grad", "gradient norm: detection"),
    Metric("grad.norm_view", "grad", "gradient norm: view"),
    # validation (trainables/metrics/detection.py and classification.py; NaN where a task is absent)
    Metric("val.map50", "val", "mAP@0.5", headline=True, direction="max", test="shown"),
    Metric("val.map", "val", "mAP@0.5:0.95", headline=True, direction="max", test="shown"),
    Metric("val.map75", "val", "mAP@0.75", test="pooled"),
    Metric("val.precision", "val", "precision", test="pooled"),
    Metric("val.recall", "val", "recall", test="pooled"),
    Metric("val.f1", "val", "F1", test="pooled"),
    Metric("val.f1_conf", "val", "F1 confidence threshold"),
    Metric("val.ap50_<class>", "val", "AP@0.5", test="pooled"),
    Metric("val.view_accuracy", "val", "view accuracy", headline=True, direction="max", test="shown"),
    # one view per clip (the mean of its frames' probabilities) against the clip's majority label, where
    # the file names give the clip (trainables/data/clips.py); NaN and 0 clips where they do not
    Metric("val.view_clip_accuracy", "val", "view accuracy per clip", direction="max", test="shown"),
    Metric("val.n_clips", "val", "clips scored", test="pooled"),
    # what a clip is on the data (the names only say which frames share a video): clips whose frames carry more
    # than one view label, clips of one frame, and the share of frames whose label is their clip's majority
    # (the ceiling a one-view-per-clip answer sets on frame accuracy)
    Metric("val.n_mixed_clips", "val", "clips with mixed view labels", test="pooled"),
    Metric("val.n_single_frame_clips", "val", "clips of one frame", test="pooled"),
    Metric("val.clip_label_agreement", "val", "frames agreeing with their clip's majority view", test="pooled"),
    Metric("val.view_macro_f1", "val", "view macro F1", test="shown"),
    Metric("val.view_balanced_accuracy", "val", "view balanced accuracy", test="pooled"),
    Metric("val.view_recall_<view>", "val", "view recall", test="pooled"),
    # the most frequent view's share of the split: what always naming it scores (a view accuracy's chance level)
    Metric("val.view_majority_share", "val", "majority view's share", test="pooled"),
    Metric(OBJECTIVE, "val", "objective", headline=True, direction="max"),  # engine.objective
    # jet present per valve (trainables/metrics/clinical.py): the threshold chosen on validation clips, then per
    # clip and per study its counts and rates; sensitivity and specificity are compared in the verdict, PPV and NPV
    # pooled only (for two methods on the same patients they follow from those two and the shared prevalence)
    Metric("val.jet_threshold_<class>", "clinical", "jet threshold (Youden point on validation clips)"),
    *(Metric(f"val.jet_{level}_{rate}_<class>", "clinical", f"jet {label} per {level}", direction="max",
             test="shown" if rate in ("sensitivity", "specificity") else "pooled")
      for level in ("clip", "study")
      for rate, label in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "PPV"),
                          ("npv", "NPV"))),
    *(Metric(f"val.jet_{level}_{count}_<class>", "clinical", f"jet {label} per {level}")
      for level in ("clip", "study")
      for count, label in (("tp", "true positives"), ("fp", "false positives"), ("tn", "true negatives"),
                           ("fn", "false negatives"))),
    # wall clock (the last epoch's value in trials.parquet)
    Metric("time.train_s", "time", "train time (s)", headline=True, direction="min"),  # training so far
    Metric("time.epoch_s", "time", "epoch time (s)"),  # this epoch's training
    Metric("time.data_s", "time", "batch preparation (s)"),  # the part of time.epoch_s spent making batches
    Metric("time.eval_s", "time", "evaluation time (s)"),  # this epoch's validation
    Metric("time.total_s", "time", "total time (s)"),  # training and validation so far
    Metric("throughput.img_per_s", "time", "training images / s"),
    # efficiency (measured once per run, but peak memory: so far)
    Metric("eff.gflops", "eff", "GFLOPs / image", headline=True, direction="min"),
    Metric("eff.params_total", "eff", "parameters", headline=True, direction="min"),
    Metric("eff.params_shared", "eff", "parameters: shared"),
    Metric("eff.params_det", "eff", "parameters: detection"),
    Metric("eff.params_cls", "eff", "parameters: view"),
    Metric("eff.shared_units", "eff", "shared backbone units"),  # model.shared_stages resolved (0: none)
    Metric("eff.balanced", "eff", "balancer applied"),  # 1: the balancer weighed the losses on a shared layer
    # how the run computed (trainables/precision.py): "bf16" | "fp32", "channels_last" | "contiguous"
    Metric("eff.precision", "eff", "precision"),
    Metric("eff.memory_format", "eff", "memory format"),  # 1: the balancer weighed the losses on a shared layer
    Metric("eff.peak_mem_mb", "eff", "peak memory (MiB)", headline=True, direction="min"),
    Metric("eff.latency_ms_b1", "eff", "latency, batch 1 (ms)", headline=True, direction="min"),
    Metric("eff.latency_ms_b32", "eff", "latency, batch 32 (ms)"),
)

# Metrics every report carries, NaN when a run ends early.
HEADLINE = tuple(k for k, m in REGISTRY.items() if m.headline)
# The held-out split's metrics (the names without ``val.``): all pooled; the shown ones in tables and console.
# Plain keys only: a family's members are named by the data (``held_out``).
TEST_POOLED = tuple(k.removeprefix("val.") for k, m in REGISTRY.items() if m.test and FAMILY not in k)
TEST_SHOWN = tuple(k.removeprefix("val.") for k, m in REGISTRY.items() if m.test == "shown" and FAMILY not in k)
CLINICAL = "clinical"  # the group of the jet-presence metrics, and the verdict's family of them


def held_out(columns: Iterable[str], tests: tuple[str, ...] = ("pooled", "shown"),
             split: str = "test") -> tuple[str, ...]:
    """The held-out metrics marked ``tests``, as names without the split (``map50``, ``ap50_AR``,
    ``jet_clip_sensitivity_MR``), in the registry's order: every plain key so marked, and the members of each
    family so marked that ``columns`` (test_runs.parquet's, ``<split>.<name>``) hold. A study scored before a
    family was marked, or before it existed, simply has none of its members."""
    present = [c.removeprefix(f"{split}.") for c in columns if str(c).startswith(f"{split}.")]
    out: list[str] = []
    for key, m in REGISTRY.items():
        if m.test not in tests:
            continue
        name = key.removeprefix("val.")
        if FAMILY not in name:
            out.append(name)
        else:
            head = name.partition(FAMILY)[0]
            out += [c for c in present if c.startswith(head) and lookup(f"val.{c}") is m]
    return tuple(out)


def lookup(key: str) -> Metric | None:
    """The registry's entry for an epoch-dict key (its own or its family's); None when unregistered."""
    if key in REGISTRY:
        return REGISTRY[key]
    for pattern, m in REGISTRY.items():
        if FAMILY in pattern and key.startswith(pattern.partition(FAMILY)[0]):
            return m
    return None


def summary(key: str) -> str:
    """How trials.parquet carries ``key``: ``BEST_LAST``, ``STATIC`` or "" (not at all, or unregistered)."""
    m = lookup(key)
    return m.summary if m else ""


def best_column(key: str) -> str:
    """The trials.parquet column of ``key``'s value at the trial's best epoch: ``best.<key>`` for a validation
    score (the trial's result), ``at_best.<key>`` for what was only measured then -- a loss, a task weight, a
    gradient: ``best.loss.box`` would read as the lowest box loss, which it is not."""
    m = lookup(key)
    return f"best.{key}" if m is not None and m.group == "val" else f"{AT_BEST}.{key}"


def renamed_best_columns(columns: list[str]) -> dict[str, str]:
    """Old trials.parquet column names -> today's: files written before ``at_best.*`` named every value at
    the best epoch ``best.<key>``; a reader renames them so old and new studies read alike."""
    return {c: best_column(c.removeprefix("best.")) for c in columns
            if c.startswith("best.") and best_column(c.removeprefix("best.")) != c}


def trial_column(key: str) -> str:
    """The trials.parquet column that compares trials on ``key``: its best epoch's (``best_column``) or its own."""
    return best_column(key) if summary(key) == BEST_LAST else key


def keys(*groups: str) -> tuple[str, ...]:
    """The plain keys (no families) of ``groups``, in the registry's order."""
    return tuple(k for k, m in REGISTRY.items() if m.group in groups and FAMILY not in k)


def label(key: str) -> str:
    """How reports name ``key``: its label, a family's with the member's name (the key when unregistered)."""
    m = lookup(key)
    if m is None:
        return key
    if key != m.key:
        return f"{m.label}: {key.removeprefix(m.key.partition(FAMILY)[0])}"
    return m.label
