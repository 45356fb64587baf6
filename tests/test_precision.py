"""train.precision / train.memory_format: how ``auto`` resolves, what stays float32, and that bf16 and fp32
training agree within bf16's precision from the same weights."""

from __future__ import annotations

import math

import pytest
import torch

from study.benchmarks.common import make_batch
from trainables.config import TrialConfig
from trainables.data.loader import load_data
from trainables.engine import evaluate, fit
from trainables.learner import Learner
from trainables.precision import Numerics, checkpoint_numerics, cpu_has_bf16_matmul, resolve_precision

CPU = torch.device("cpu")
TINY = {"data.imgsz": 64, "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_test": 8,
        "data.batch": 8, "train.interference_batches": 1, "train.epochs": 1}


def test_auto_is_bf16_only_where_the_hardware_runs_it():
    assert resolve_precision("auto", CPU, cpu_bf16=False) == "fp32"  # a laptop with AVX2 only: no slower
    assert resolve_precision("auto", CPU, cpu_bf16=True) == "bf16"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", CPU, cpu_bf16=False) == "bf16"  # asked for explicitly: honoured
    assert Numerics.resolve("auto", "auto", CPU).memory_format == "channels_last"
    assert Numerics.resolve("auto", "contiguous", CPU).memory_format == "contiguous"


@pytest.mark.skipif(not cpu_has_bf16_matmul(), reason="this CPU has no bf16 matrix instructions")
def test_auto_resolves_to_bf16_on_this_cpu():
    assert Numerics.resolve("auto", "auto", CPU).precision == "bf16"


def test_stored_configs_with_train_amp_still_read():
    flat = TrialConfig().to_flat()
    del flat["train.precision"], flat["train.memory_format"]
    on = TrialConfig.from_flat({**flat, "train.amp": True})
    off = TrialConfig.from_flat({**flat, "train.amp": False})
    assert (on.train.precision, off.train.precision) == ("auto", "fp32")
    assert on.train.memory_format == "contiguous"  # what such a run used: PyTorch's default layout


def test_a_checkpoint_runs_at_the_precision_it_trained_at():
    train = TrialConfig().train  # precision auto
    assert checkpoint_numerics({"numerics": {"precision": "bf16", "memory_format": "channels_last"}}, train,
                               CPU).precision == "bf16"
    assert checkpoint_numerics({"numerics": {"precision": "fp32"}}, train, CPU).precision == "fp32"
    # from before train.precision: amp meant bf16 on CUDA only, so a CPU-trained model ran in fp32
    assert checkpoint_numerics({}, train, CPU).precision == "fp32"
    assert checkpoint_numerics({}, train, torch.device("cuda")).precision == "bf16"
    assert checkpoint_numerics({"numerics": {"precision": "bf16"}}, train, CPU, precision="fp32").precision == "fp32"


def _steps(precision: str, memory_format: str, steps: int = 4) -> list[tuple[list[float], list[float]]]:
    """(losses, GradNorm weights) of ``steps`` Learner steps of the shared model from seed 0's weights."""
    cfg = TrialConfig.from_partial({"arch": "shared", "data.imgsz": 64, "data.batch": 8, "balancer.name": "gradnorm",
                                    "balancer.warmup_steps": 1, "train.precision": precision,
                                    "train.memory_format": memory_format})
    images, targets, views = make_batch(64, 8, CPU)
    torch.manual_seed(0)
    learner = Learner(cfg, 4, 4, CPU)
    out = []
    for _ in range(steps):
        step = learner.step(images, targets, views)
        out.append((step.losses.tolist(), step.weights.tolist()))
    for p in learner.model.parameters():  # autocast computes in bf16 on copies: the weights stay float32
        assert p.dtype == torch.float32
    return out


def test_bf16_and_fp32_steps_agree_within_bf16_precision():
    torch.set_num_threads(1)
    fp32 = _steps("fp32", "contiguous")
    fp32_cl = _steps("fp32", "channels_last")
    bf16 = _steps("bf16", "channels_last")
    # channels-last is a layout, not a precision: the same numbers up to float32 reassociation. The first step
    # (same weights) within 0.1%; the updates then carry that rounding on (0.03% seen on one machine, 0.2% on
    # another whose oneDNN picks other kernels), so later steps within 1%, still far inside bf16's 10% below
    assert fp32_cl[0][0] == pytest.approx(fp32[0][0], rel=1e-3)
    for (la, wa), (lb, wb) in zip(fp32, fp32_cl, strict=True):
        assert lb == pytest.approx(la, rel=1e-2) and wb == pytest.approx(wa, abs=1e-5)
    # bf16 keeps 8 significant bits (~0.4% per rounding): the first step's losses (same weights, only the
    # forward's rounding differs) within 1%; after three updates from those gradients within 10%; GradNorm's
    # weights (fp32 arithmetic on fp32 norms) within 0.005 of the fp32 run's
    assert bf16[0][0] == pytest.approx(fp32[0][0], rel=1e-2)
    for (la, wa), (lb, wb) in zip(fp32[1:], bf16[1:], strict=True):
        assert lb == pytest.approx(la, rel=0.1)
        assert wb == pytest.approx(wa, abs=5e-3)
    assert fp32[-1][1] != [1.0, 1.0]  # GradNorm's weights did move, so their agreement says something


@pytest.fixture(scope="module")
def data():
    return load_data(TrialConfig.from_partial(TINY).data, seed=0)


def test_a_bf16_run_records_its_precision_and_keeps_float32_state(data):
    cfg = TrialConfig.from_partial({**TINY, "train.precision": "bf16", "optim.ema": True})
    reports = []
    result = fit(cfg, data, report=lambda m, s: reports.append((m, s)))
    metrics, state = reports[-1]
    assert result.status == "finished"
    assert (metrics["eff.precision"], metrics["eff.memory_format"]) == ("bf16", "channels_last")
    assert state["numerics"] == {"precision": "bf16", "memory_format": "channels_last"}
    tensors = {**state["model"], **state["ema"]["module"]}
    floats = {k: v for k, v in tensors.items() if v.is_floating_point()}
    assert floats and all(v.dtype == torch.float32 for v in floats.values())  # weights, EMA, BN statistics
    assert all(math.isfinite(metrics[k]) for k in ("val.map", "val.view_accuracy", "grad.cosine", "loss.det"))


def test_evaluation_at_either_precision_scores_the_same_model_alike(data):
    cfg = TrialConfig.from_partial({**TINY, "train.epochs": 2, "train.precision": "fp32"})
    model = fit(cfg, data).model
    fp32 = evaluate(model, data, "val", cfg, CPU, Numerics.resolve("fp32", "contiguous", CPU))
    bf16 = evaluate(model, data, "val", cfg, CPU, Numerics.resolve("bf16", "channels_last", CPU))
    # the view's argmax rarely flips under bf16 rounding: at most one of 8 frames
    assert abs(fp32["val.view_accuracy"] - bf16["val.view_accuracy"]) <= 1 / 8 + 1e-9


def test_resuming_at_another_precision_is_refused(data):
    cfg = TrialConfig.from_partial({**TINY, "train.epochs": 2, "train.precision": "bf16"})
    saved = []
    fit(cfg.replace(**{"train.epochs": 1}), data, report=lambda m, s: saved.append(s))
    with pytest.raises(ValueError, match="checkpoint trained at bf16"):
        fit(cfg.replace(**{"train.precision": "fp32"}), data, resume=saved[-1])


def test_bench_train_times_each_precision_side_by_side():
    from study.benchmarks.common import numerics_variants
    from study.benchmarks.train import run

    rows = run(imgsz=64, batch=2, sizes=("n",), steps=1, warmup=0, device="cpu", archs=("shared",),
               variants=numerics_variants(["fp32", "bf16"], ["channels_last"]))
    arms = [(r["precision"], r["memory_format"]) for r in rows if "step_s" in r]
    assert arms == [("fp32", "channels_last"), ("bf16", "channels_last")]
    (ratio,) = [r for r in rows if "ratio" in r]
    steps = [r["step_s"] for r in rows if "step_s" in r]
    assert ratio["ratio"] == "shared/n bf16+channels_last / fp32+channels_last"
    assert ratio["time_ratio"] == pytest.approx(steps[1] / steps[0], rel=0.01)  # rows round step_s to 0.1 ms


def test_bench_precision_pairs_each_seed_by_hand(tmp_path):
    import pandas as pd

    from study.benchmarks.precision import summarize

    # two seeds; each run's epochs with val.objective choosing the best epoch, a diverged last row ignored
    runs = {  # (precision, seed): (map50 per epoch, view accuracy per epoch, train seconds at the end)
        ("fp32", 0): ([0.10, 0.30, 0.20], [0.50, 0.60, 0.70], 100.0),
        ("bf16", 0): ([0.20, 0.25, 0.40], [0.40, 0.50, 0.60], 50.0),
        ("fp32", 1): ([0.30, 0.10, 0.10], [0.70, 0.40, 0.40], 80.0),
        ("bf16", 1): ([0.10, 0.30, 0.10], [0.60, 0.60, 0.50], 60.0),
    }
    for (precision, seed), (map50, view, train_s) in runs.items():
        rows = [{"epoch": e + 1, "status": "running", "val.map50": m, "val.map": m / 4, "val.view_accuracy": v,
                 "val.objective": 0.5 * m / 4 + 0.5 * v, "time.train_s": train_s * (e + 1) / 3,
                 "eff.precision": precision} for e, (m, v) in enumerate(zip(map50, view, strict=True))]
        rows.append({"epoch": 4, "status": "diverged", "val.objective": float("nan")})
        folder = tmp_path / f"{precision}-s{seed}"
        folder.mkdir()
        pd.DataFrame(rows).to_parquet(folder / "epochs.parquet")
    out = {r["metric"]: r for r in summarize(tmp_path, [0, 1]) if "metric" in r}
    # best epochs by objective: fp32 s0 epoch 3 (0.375), bf16 s0 epoch 3 (0.35), fp32 s1 epoch 1 (0.3875),
    # bf16 s1 epoch 2 (0.3375); deltas of map50 at best: 0.40 - 0.20 = 0.20, 0.30 - 0.30 = 0.0
    assert out["best.val.map50"]["deltas"] == [0.2, 0.0]
    assert out["best.val.map50"]["delta_mean"] == pytest.approx(0.1)
    # t(1) at 95% is 12.706; s = 0.1414, half-width = 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert out["best.val.map50"]["delta_ci95"] == pytest.approx(1.2706, abs=1e-3)
    assert out["best.val.view_accuracy"]["deltas"] == [-0.1, -0.1]
    assert out["last.val.map50"]["deltas"] == [0.2, 0.0]  # the last scored epoch (3), not the diverged row
    assert out["train_s ratio bf16/fp32"]["ratios"] == [0.5, 0.75]
