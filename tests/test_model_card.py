"""The model card (study/modelcard/) and ``export --best``: which checkpoint is a study's chosen model, by hand on
a study folder built here (the rule: best configuration, finished and scored, highest validation score, lowest
seed on a tie; fold 0 unless --fold), every held-out metric the study's files hold (none listed by name), the
data's facts by hand, and the limitations the facts imply.

The study folders here are written by hand around a real tiny checkpoint; tests/test_mlflow.py exports and
registers the chosen models of a real folds study, and the slow test below does ``export --best`` on a real
one-split study."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

from study.cli import run_cli
from study.export import main as export_main
from study.heldout.reruns import headline_table
from study.modelcard.choice import FOLD_DIR, chosen_model
from study.modelcard.limits import limitations
from study.modelcard.provenance import describe_data
from study.modelcard.scores import model_scores, procedure_scores
from study.store.checkpoints import save_checkpoint
from study.store.trials import trial_row, trials_table, write_atomic
from tests.test_evaluate import tiny_checkpoint
from trainables.data.provenance import key_comment
from trainables.data.types import DecodedData

METHOD = "shared/equal"  # the tiny checkpoint's method (TINY's defaults)
# re-runs of the best configuration "cfg1" (and one of "cfg2"): (trial, repeat_of, seed, val objective, status)
RERUNS = [("r1", "cfg1", 1000, 0.5, "finished"), ("r2", "cfg1", 1001, 0.9, "diverged"),
          ("r3", "cfg1", 1002, 0.7, "finished"), ("r4", "cfg1", 1003, 0.7, "finished"),
          ("r5", "cfg2", 1004, 0.99, "finished")]
CLINICAL = "jet_sensitivity_clip_AR"  # a metric no list in the card's code names: read from the files only


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("card-ckpt"))


def write_split_study(where: Path, state: dict[str, Any], history: list[dict[str, Any]], methods: list[str],
                      reruns: list[tuple] = RERUNS, shift: float = 0.0) -> None:
    """One split's files as the held-out phase leaves them: trials.parquet (the re-runs, with their validation
    scores), test_runs.parquet, headline.parquet, and each re-run's best-epoch checkpoint in ``NAME-repeats``."""
    cfg = dict(state["config"])
    rows = [trial_row(t, "gradnorm", cfg, [{**history[-1], "epoch": 1, "val.objective": v}], status, repeat_of=of)
            for t, of, _, v, status in reruns]
    for row, (_, _, seed, _, _) in zip(rows, reruns, strict=True):
        row["train.seed"] = seed
    write_atomic(trials_table(rows), where / "trials.parquet")
    runs = pd.DataFrame([{"trial_id": t, "repeat_of": of, "method": METHOD, "train.seed": seed, "status": status,
                          "scored": True, "reason": "", "best_epoch": 1, "images": 8,
                          "test.map50": 0.1 * i + shift, f"test.{CLINICAL}": 0.05 * i}
                         for i, (t, of, seed, _, status) in enumerate(reruns)])
    runs.to_parquet(where / "test_runs.parquet")
    head = [{"method": m, "configs": "cfg1,cfg2", "n_runs": len(reruns), "n_folds": 1, "n_seeds": 4,
             "n_failed": 1, "interval_unit": "seed", "split_by": "folders", "test.map50.mean": 0.25 + shift,
             "test.map50.ci95": 0.125, f"test.{CLINICAL}.mean": 0.5, f"test.{CLINICAL}.ci95": None}
            for m in methods]
    write_atomic(headline_table(head), where / "headline.parquet")
    for t, *_ in reruns:
        save_checkpoint({**state, "epoch": 1},
                        where.parent / f"{where.name}-repeats" / f"trial_{t}" / "checkpoint_000000" / "checkpoint.pt")


def manifest(folds: int = 0) -> dict[str, Any]:
    return {"settings": {"folds": folds, "seed": 3}, "seeds": {"study": 3}, "dataset_fingerprint": "d" * 64,
            "runs": [{"commit": "a" * 40, "dirty": False, "code": "c" * 64}]}


@pytest.fixture
def one_split_study(trained, tmp_path) -> Path:
    _, state, history = trained
    study = tmp_path / "s"
    study.mkdir()
    (study / "manifest.json").write_text(json.dumps(manifest()))
    write_split_study(study, state, history, [METHOD])
    return study


def test_the_chosen_rerun_is_the_best_configurations_best_validated_finished_one(one_split_study):
    chosen = chosen_model(one_split_study)
    # r5 (0.99) re-runs the second configuration, r2 (0.9) diverged: r3 and r4 tie at 0.7, the lower seed wins
    assert (chosen.trial_id, chosen.seed, chosen.epoch, chosen.repeat_of) == ("r3", 1002, 1, "cfg1")
    assert chosen.checkpoint == one_split_study.parent / "s-repeats" / "trial_r3" / "checkpoint_000000" / \
        "checkpoint.pt"
    assert chosen.fold is None and chosen.folds == 0 and chosen.run["test.map50"] == pytest.approx(0.2)
    assert "highest best.val.objective" in chosen.rule


def test_export_best_writes_onnx_card_and_checkpoint_with_the_studys_scores(trained, one_split_study, tmp_path):
    out = tmp_path / "out" / "m.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = run_cli(export_main, ["--best", str(one_split_study), "--onnx", str(out), "--latency-repeats", "5"])
    assert code == 0, printed.getvalue()
    assert "chosen model: shared/equal re-run r3 (seed 1002, epoch 1)" in printed.getvalue()
    chosen = one_split_study.parent / "s-repeats" / "trial_r3" / "checkpoint_000000" / "checkpoint.pt"
    assert out.with_suffix(".pt").read_bytes() == chosen.read_bytes()  # the weights beside their ONNX file

    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["chosen"]["trial_id"] == "r3" and card["chosen"]["study"] == "s"
    assert card["model"]["method"] == METHOD and card["model"]["outputs"] == ["candidates", "view_logits"]
    assert card["model"]["checkpoint"]["file"] == "s-repeats/trial_r3/checkpoint_000000/checkpoint.pt"
    procedure, own = card["heldout"]["procedure"], card["heldout"]["model"]
    # every metric of the headline row, the one no code names included; an empty interval stays empty
    assert procedure["metrics"] == {"map50": {"mean": 0.25, "ci95": 0.125}, CLINICAL: {"mean": 0.5, "ci95": None}}
    assert procedure["interval_unit"] == "seed" and procedure["n_failed"] == 1
    assert own["metrics"] == {"map50": pytest.approx(0.2), CLINICAL: pytest.approx(0.1)} and own["images"] == 8
    assert card["training"]["precision"] == trained[1]["numerics"]["precision"]  # what it trained in, recorded
    latency = card["latency"]
    assert latency["repeats"] == 5 and latency["batch"] == 1 and latency["imgsz"] == 64
    assert 0 < latency["min_ms"] <= latency["p25_ms"] <= latency["median_ms"] <= latency["p75_ms"] <= \
        latency["max_ms"]
    assert card["code"]["trained_with"][0]["commit"] == "a" * 40
    assert card["data"]["available"] and card["data"]["splits"]["test"]["frames"] == 8
    md = out.with_suffix(".card.md").read_text()
    assert f"`test.{CLINICAL}`" in md and "| 0.25 ± 0.125 | 0.2 |" in md and "## Limitations" in md
    assert str(tmp_path) not in md + json.dumps(card)  # no path of this machine in the card


def test_a_folds_study_exports_fold_0_unless_told_and_never_chooses_a_fold_by_score(trained, tmp_path):
    _, state, history = trained
    study = tmp_path / "f"
    study.mkdir()
    (study / "manifest.json").write_text(json.dumps(manifest(folds=2)))
    for fold in (0, 1):
        where = study / FOLD_DIR.format(fold)
        where.mkdir()
        # fold 1's re-runs score higher on validation and test alike: still not chosen by default
        reruns = [(f"{t}f{fold}", of, seed, v + fold, status) for t, of, seed, v, status in RERUNS]
        write_split_study(where, state, history, [METHOD, "dual"], reruns, shift=fold)
    write_atomic(headline_table([{"method": METHOD, "configs": "cfg1", "n_runs": 10}]), study / "headline.parquet")
    first = chosen_model(study, METHOD)
    assert (first.trial_id, first.fold, first.folds) == ("r3f0", 0, 2)
    assert first.checkpoint.parent.parent.parent.name == "fold-0-repeats"
    assert "fold 0 of 2 by default" in first.rule and "no fold is chosen by a score" in first.rule
    second = chosen_model(study, METHOD, fold=1)
    assert (second.trial_id, second.fold) == ("r3f1", 1) and "by --fold" in second.rule
    for kwargs, said in (({}, "does not choose among them"), ({"method": "shared/gradnorm"}, "it has shared/equal"),
                         ({"method": METHOD, "fold": 2}, "has folds 0 to 1")):
        with pytest.raises(Exception, match=said):
            chosen_model(study, **kwargs)


def test_bad_best_arguments_are_one_line_and_exit_2(one_split_study, tmp_path, capsys):
    for argv, said in ((["--onnx", "m.onnx"], "give either a CHECKPOINT or --best"),
                       (["--best", str(one_split_study), "--fold", "1", "--onnx", "m.onnx"], "a one-split study"),
                       (["--best", str(tmp_path / "nothing"), "--onnx", "m.onnx"], "no study there"),
                       (["x.pt", "--method", "dual", "--onnx", "m.onnx"], "use them with --best")):
        assert run_cli(export_main, argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_held_out_scores_are_every_metric_the_files_hold(tmp_path):
    row = {"method": "dual", "n_runs": 4, "n_folds": 2, "interval_unit": "fold", "test.map.mean": 0.3,
           "test.map.ci95": 0.1, "test.valve_ppv_TR.mean": 0.75, "test.valve_ppv_TR.ci95": 0.2,
           "test.view_accuracy.mean": None, "test.view_accuracy.ci95": None}
    write_atomic(headline_table([row]), tmp_path / "headline.parquet")
    scores = procedure_scores(tmp_path, "dual")
    assert scores["metrics"] == {"map": {"mean": 0.3, "ci95": 0.1}, "valve_ppv_TR": {"mean": 0.75, "ci95": 0.2}}
    assert scores["n_folds"] == 2 and scores["interval_unit"] == "fold"
    assert procedure_scores(tmp_path, "shared/gradnorm") is None
    own = model_scores({"trial_id": "x", "images": np.int64(12), "test.map": np.float64(0.5), "test.f1": float("nan"),
                        "fold": 1})
    assert own == {"images": 12, "fold": 1, "metrics": {"map": 0.5}}


def jpeg_with_key(path: Path, fingerprint: str) -> str:
    """The smallest JPEG a key reader walks: SOI, one COM segment, EOI (no pixels: the reader decodes nothing)."""
    comment = key_comment(fingerprint)
    path.write_bytes(b"\xff\xd8\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + b"\xff\xd9")
    return str(path)


def test_data_facts_by_hand(tmp_path):
    # 6 frames: patients p1 (clip a: 3 frames, views 0, 0, 1 -> mixed) and p2 (clip b: 1 frame), all train but
    # frames 4, 5 (patient p3, test); boxes: class 0 twice on frame 0, class 1 once on frame 2 and on frame 5
    files = [jpeg_with_key(tmp_path / name, "ab12cd34")
             for name in ("p1-a-0001.jpg", "p1-a-0002.jpg", "p1-a-0003.jpg", "p2-b-0001.jpg", "p3-c-0001.jpg",
                          "p3-c-0002.jpg")]
    boxes = np.array([[0, 0, 1, 1, 5, 5], [0, 0, 6, 6, 9, 9], [2, 1, 1, 1, 4, 4], [5, 1, 2, 2, 3, 3]], np.float32)
    data = DecodedData(images=np.zeros((6, 3, 32, 32), np.uint8), boxes=boxes, views=np.array([0, 0, 1, 2, 0, 1]),
                       groups=np.array(["p1", "p1", "p1", "p2", "p3", "p3"]),
                       splits={"train": np.arange(4), "val": np.zeros(0, np.int64), "test": np.array([4, 5])},
                       names=("AR", "MR"), view_names=("A4C", "PLAX", "PSAX"), fingerprint="f" * 64,
                       files=np.array(files, dtype=object))
    facts = describe_data(data)
    assert facts["pseudonym_keys"] == {"ab12cd34": 6} and facts["fingerprint"] == "f" * 64
    assert set(facts["splits"]) == {"train", "test"}  # an empty split is not a row
    train, test = facts["splits"]["train"], facts["splits"]["test"]
    assert (train["frames"], train["patients"], test["frames"], test["patients"]) == (4, 2, 2, 1)
    assert train["frames_per_view"] == {"A4C": 2, "PLAX": 1, "PSAX": 1}
    assert train["boxes_per_class"] == {"AR": 2, "MR": 1} and train["frames_with_class"] == {"AR": 1, "MR": 1}
    assert test["boxes_per_class"] == {"AR": 0, "MR": 1}
    # clips a (3 frames, 2 agree with its majority A4C) and b (1 frame): 3 of 4 frames agree
    assert facts["label_consistency"] == {"clips": 2, "mixed_view_clips": 1, "single_frame_clips": 1,
                                          "frames_agreeing_with_clip": 0.75}


def test_limitations_follow_the_facts():
    train = {"patients": 30, "frames": 600, "boxes_per_class": {"AR": 100, "MR": 200, "PR": 7, "TR": 25},
             "frames_with_class": {"AR": 80, "MR": 150, "PR": 5, "TR": 20}}
    card = {"data": {"source": "echo/data.yaml", "available": True, "imgsz": 160, "classes": ["AR", "MR", "PR", "TR"],
                     "views": ["A4C", "PLAX", "PSAX"], "split": {"by": "patient"},
                     "splits": {"train": train, "val": {"patients": 1, "frames": 20}},
                     "label_consistency": {"clips": 40, "mixed_view_clips": 6, "frames_agreeing_with_clip": 0.9}},
            "model": {"outputs": ["candidates", "view_logits"]}, "training": {"precision": "bf16"},
            "chosen": {"fold": 2, "folds": 5}, "heldout": {"procedure": {"interval_unit": "fold", "n_folds": 5}}}
    text = "\n".join(limitations(card))
    assert "30 patients (600 frames) in train, 1 patient (20 frames) in val" in text
    assert "5 folds of unseen patients" in text and "6 of 40 training clips" in text and "90.0%" in text
    assert "PR 7 boxes in 5 training frames" in text and "TR" not in text.split("Few examples")[1].split("\n")[0]
    assert "A4C, PLAX, PSAX only" in text and "fold 2's model" in text and "other 4 folds" in text
    assert "Trained in bf16" in text and "Non-maximum suppression" in text and "synthetic" not in text
    assert "not dealt by patient" not in text
    folders = {**card, "data": {**card["data"], "split": {"by": "folders"}, "source": "synthetic"}, "chosen": None}
    text = "\n".join(limitations(folders))
    assert "not dealt by patient" in text and "synthetic frames" in text and "fold" not in text.split("Small")[0]


@pytest.mark.slow
def test_export_best_of_a_real_one_split_study(ray_cluster, tmp_path):
    from study.run import main as run_main
    from tests.conftest import TINY

    argv = ["--storage", str(tmp_path), "--name", "h", *TINY, "--space", "gradnorm", "--samples", "2",
            "--epochs", "1", "--repeat-best", "1", "--seeds", "2", "--test"]
    assert run_main(argv) == 0
    study = tmp_path / "h"
    out = tmp_path / "model" / "m.onnx"
    assert run_cli(export_main, ["--best", str(study), "--onnx", str(out), "--latency-repeats", "3"]) == 0
    card = json.loads(out.with_suffix(".card.json").read_text())
    runs = pd.read_parquet(study / "test_runs.parquet").set_index("trial_id")
    trials = pd.read_parquet(study / "trials.parquet").set_index("trial_id")
    mine = runs.loc[card["chosen"]["trial_id"]]
    rivals = trials.loc[runs.index[runs["repeat_of"] == mine["repeat_of"]], "best.val.objective"]
    assert trials.at[card["chosen"]["trial_id"], "best.val.objective"] == rivals.max()
    head = pd.read_parquet(study / "headline.parquet").iloc[0]
    for name, stats in card["heldout"]["procedure"]["metrics"].items():
        assert stats["mean"] == pytest.approx(head[f"test.{name}.mean"])
    for name, value in card["heldout"]["model"]["metrics"].items():
        assert value == pytest.approx(mine[f"test.{name}"])
    manifest_runs = json.loads((study / "manifest.json").read_text())["runs"]
    assert card["code"]["trained_with"][0]["code"] == manifest_runs[0]["code"]
    assert out.with_suffix(".pt").read_bytes() == Path(mine["checkpoint"]).read_bytes()


def test_the_fold_folders_are_named_as_the_folds_study_names_them():
    from study.heldout import folds  # imports Ray: choice.py keeps its own copy of the name, checked here

    assert FOLD_DIR == folds.FOLD_DIR
