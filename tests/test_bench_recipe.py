"""The recipe benchmark: its Ultralytics-style epoch picking by hand, and one tiny run of the command."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from study.benchmarks import recipe


def epoch(n: int, map50: float, map_: float, view: float) -> dict[str, float]:
    return {"epoch": n, "val.map50": map50, "val.map": map_, "val.view_accuracy": view}


def test_peer_style_picks_each_task_by_its_own_score_later_epoch_on_ties() -> None:
    history = [epoch(1, 0.60, 0.20, 0.70), epoch(2, 0.50, 0.25, 0.75), epoch(3, 0.70, 0.19, 0.75),
               epoch(4, 0.40, 0.26, 0.60)]
    # detector fitness 0.1 mAP@.5 + 0.9 mAP@.5:.95: 0.240, 0.275, 0.241, 0.274 -> epoch 2, though epoch 3
    # has the best mAP@.5; the classifier's top-1 ties at 0.75 in epochs 2 and 3 -> the later, 3
    got = recipe.peer_style(history)
    assert got == {"det_epoch": 2, "det.map50": 0.5, "det.map": 0.25, "view_epoch": 3, "view.accuracy": 0.75}
    # a tie in fitness goes to the later epoch as well
    tied = recipe.peer_style([epoch(1, 0.5, 0.2, 0.1), epoch(2, 0.5, 0.2, 0.1)])
    assert tied["det_epoch"] == 2 and tied["view_epoch"] == 2


def test_peer_style_of_a_single_task_arm_leaves_the_other_task_empty() -> None:
    got = recipe.peer_style([epoch(1, 0.3, 0.1, math.nan), epoch(2, 0.4, 0.1, math.nan)])
    assert got["det_epoch"] == 2 and got["view_epoch"] is None and math.isnan(got["view.accuracy"])
    none = recipe.peer_style([epoch(1, math.nan, math.nan, 0.5)])
    assert none["det_epoch"] is None and math.isnan(none["det.map50"]) and none["view_epoch"] == 1


def test_recipe_command_prints_both_tables(tmp_path, capsys) -> None:
    arms = ["det_only", "shared/gradnorm", "shared@2/gradnorm"]
    argv = ["--epochs", "2", "--imgsz", "64", "--batch", "16", "--arms", *arms, "--threads", "1",
            "--out", str(tmp_path), "--set", "data.synthetic_train=64", "--set", "data.synthetic_val=32",
            "--set", "train.interference_batches=1", "--set", "train.bn_recalibration_batches=1"]
    assert recipe.main(argv) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith('{"bench": "recipe"')]
    assert [r["arm"] for r in rows] == arms and all(r["status"] == "finished" for r in rows)
    for r in rows:
        folder = tmp_path / r["arm"].replace("/", "-")
        assert (folder / "best.pt").is_file()
        # the second table's picks, worked out by hand from the two epochs the arm wrote: the detector's
        # epoch by 0.1 mAP@.5 + 0.9 mAP@.5:.95, the view's by accuracy, each the later one on a tie
        one, two = pd.read_parquet(folder / "epochs.parquet").to_dict("records")
        assert (one["epoch"], two["epoch"]) == (1, 2)
        det = two if 0.1 * two["val.map50"] + 0.9 * two["val.map"] >= 0.1 * one["val.map50"] + 0.9 * one["val.map"] \
            else one
        view = None if math.isnan(one["val.view_accuracy"]) else \
            two if two["val.view_accuracy"] >= one["val.view_accuracy"] else one
        assert r["peer_style"] == pytest.approx({
            "det_epoch": det["epoch"], "det.map50": round(det["val.map50"], 4), "det.map": round(det["val.map"], 4),
            "view_epoch": view["epoch"] if view else None,
            "view.accuracy": round(view["val.view_accuracy"], 4) if view else math.nan}, nan_ok=True)
    assert rows[0]["peer_style"]["view_epoch"] is None and rows[1]["peer_style"]["view_epoch"] in (1, 2)
    assert "each task's epoch picked by that task alone, as Ultralytics keeps best.pt" in out
    # an arm at a split shares the stem and stage2 only; the default shares every unit up to P4
    assert [r["eff.shared_units"] for r in rows[1:]] == [4, 2]
    assert rows[2]["eff.params_shared"] < rows[1]["eff.params_shared"] < rows[1]["eff.params_total"]


def test_a_set_split_applies_to_the_shared_arms_only() -> None:
    base = {"model.shared_stages": "2"}
    assert recipe.arm_config("shared/gradnorm", base).model.shared_stages == 2
    assert recipe.arm_config("shared@0/equal", base).model.shared_stages == 0  # the arm's own split wins
    assert recipe.arm_config("dual", base).model.shared_stages == -1


def test_a_bad_arm_is_one_line_before_any_training(capsys) -> None:
    from study.cli import run_cli

    assert run_cli(recipe.main, ["--arms", "shared@9/gradnorm", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.shared_stages=9 must be in [0, 4]" in err[0]
