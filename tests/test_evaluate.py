"""``python -m study.evaluate``: a real tiny checkpoint (trainables.engine.fit) scored again, and bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from study.cli import run_cli
from study.evaluate import main
from study.heldout.scoring import evaluate_state
from study.store.checkpoints import save_checkpoint, trial_checkpoint
from study.store.trials import trial_row, trials_table, write_atomic
from trainables.config import TrialConfig

TINY = {"data.imgsz": 64, "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_test": 8,
        "data.batch": 8, "train.epochs": 1, "train.device": "cpu", "train.interference_batches": 1,
        "optim.ema": True, "train.seed": 3}


def tiny_checkpoint(folder: Path, **overrides: Any) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """Train one epoch of a tiny model; returns (checkpoint path, its state, the epoch history)."""
    from trainables.data.loader import load_data
    from trainables.engine import fit

    torch.set_num_threads(1)
    cfg = TrialConfig.from_partial({**TINY, **overrides})
    states: list[dict[str, Any]] = []
    result = fit(cfg, load_data(cfg.data, seed=cfg.train.seed), report=lambda m, s: states.append(s))
    path = save_checkpoint(states[-1], folder / "checkpoint.pt")
    return path, states[-1], result.history


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def cli(argv: list[Any], capsys) -> tuple[int, str, str]:
    code = run_cli(main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_scoring_the_val_split_again_gives_the_training_numbers(trained):
    """Same weights (EMA), same data, same metric code: the numbers fit() reported for val come back."""
    path, state, history = trained
    assert state["ema"]  # the EMA weights are the ones scored, as in training
    result = evaluate_state(state, split="val", device="cpu", path=path)
    last = history[-1]
    for key in ("map", "map50", "precision", "recall", "view_accuracy", "view_macro_f1"):
        assert result["metrics"][f"val.{key}"] == pytest.approx(last[f"val.{key}"], abs=1e-9), key
    assert result["images"] == 8 and result["split_seed"] == 3


def test_cli_scores_the_test_split_and_writes_json(trained, tmp_path, capsys):
    path, _, _ = trained
    code, out, _ = cli([path, "--split", "test", "--device", "cpu", "--json", tmp_path / "r.json"], capsys)
    assert code == 0 and "test.map50" in out and "test.view_accuracy" in out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["split"] == "test" and saved["images"] == 8 and saved["arch"] == "shared"
    assert set(saved["metrics"]) >= {"test.map", "test.map50", "test.view_accuracy"}
    assert all(k.startswith("test.") for k in saved["metrics"])


def test_cli_reports_jet_presence_per_valve_with_thresholds_chosen_on_val(trained, tmp_path, capsys):
    """End to end on the tiny checkpoint: per valve, the threshold chosen on val (the same whichever split is
    scored), the test split's clips and studies counted against labels rebuilt here from the data's boxes, and the
    majority view printed beside view accuracy. Synthetic names give no clip: each frame is a clip of its own."""
    from trainables.data.loader import load_data

    path, state, _ = trained
    code, out, _ = cli([path, "--split", "test", "--device", "cpu", "--json", tmp_path / "r.json"], capsys)
    assert code == 0 and "jet present, per valve: thresholds chosen on the val split" in out
    assert re.search(r"test\.view_accuracy +\d\.\d{4}  \(majority view: \d\.\d{4}\)", out)
    saved = json.loads((tmp_path / "r.json").read_text())
    on_val = evaluate_state(state, split="val", device="cpu", path=path)["metrics"]
    data = load_data(TrialConfig.from_flat(state["config"]).data, seed=3)
    test = data.splits["test"]
    assert set(saved["jets"]) == set(data.names) and saved["jet_chosen_on"] == "val"
    for c, name in enumerate(data.names):
        jets = saved["jets"][name]
        chosen = on_val[f"val.jet_threshold_{name}"]
        assert jets["threshold"] == (chosen if math.isfinite(chosen) else None)  # chosen on val, applied to test
        if jets["threshold"] is None:
            continue
        frames = {int(i) for i in data.boxes[data.boxes[:, 1] == c, 0]} & set(test.tolist())  # frames with a jet
        studies = {data.groups[i] for i in frames}
        for level, units, positive in (("clip", len(test), len(frames)), ("study", len(set(data.groups[test])),
                                                                          len(studies))):
            counts = jets[level]
            assert counts["tp"] + counts["fn"] == positive and sum(counts[k] for k in ("tp", "fp", "tn", "fn")) == units
            assert saved["metrics"][f"test.jet_{level}_tp_{name}"] == counts["tp"]


def test_best_finds_the_winning_trials_checkpoint_in_a_tune_layout(trained, tmp_path, capsys):
    _, state, history = trained
    study = tmp_path / "s"
    cfg = dict(state["config"])
    rows = [trial_row("aaaa0001", "gradnorm", cfg, [{**history[-1], "val.objective": 0.1}], "finished"),
            trial_row("bbbb0002", "gradnorm", cfg, [{**history[-1], "val.objective": 0.9}], "finished"),
            trial_row("cccc0003", "gradnorm", cfg, [], "error")]
    write_atomic(trials_table(rows), study / "trials.parquet")
    (study / "manifest.json").write_text(json.dumps({"seeds": {"study": 3}}))
    for tid in ("aaaa0001", "bbbb0002"):  # as Tune names them: <trainable>_<trial_id>_<n>_<params>_<date>
        save_checkpoint(state, study / f"train_trial_{tid}_1_arch=shared_2026-01-01/checkpoint_000000/checkpoint.pt")
    assert trial_checkpoint(study, "bbbb0002").parts[-3].startswith("train_trial_bbbb0002_")
    code, out, _ = cli(["--best", study, "--split", "val", "--device", "cpu"], capsys)
    assert code == 0 and "best trial: bbbb0002" in out and "(seed 3)" in out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the corrupt file's bytes
@pytest.mark.parametrize("case", ["corrupt", "foreign", "other-arch", "no-split", "both"])
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, capsys, case):
    path, state, _ = trained
    argv: list[Any] = []
    if case == "corrupt":
        (tmp_path / "c.pt").write_bytes(b"\x80not a checkpoint")
        argv, expect = [tmp_path / "c.pt"], "not a readable checkpoint"
    elif case == "foreign":
        torch.save({"weights": torch.zeros(2)}, tmp_path / "f.pt")
        argv, expect = [tmp_path / "f.pt"], "not a checkpoint written by this tool"
    elif case == "other-arch":  # dual's config with the shared model's weights
        config = {**state["config"], "arch": "dual"}
        save_checkpoint({**state, "config": config, "ema": {}}, tmp_path / "o.pt")
        argv, expect = [tmp_path / "o.pt"], "do not fit a dual model"
    elif case == "no-split":
        argv, expect = [path, "--split", "holdout"], "has no 'holdout' images"
    else:
        argv, expect = [path, "--best", tmp_path], "not both"
    code, _, err = cli(argv, capsys)
    assert code == 2 and expect in err and err.count("\n") == 1 and "Traceback" not in err


def test_evaluate_on_the_shared_dataset_prints_the_view_per_clip_and_the_clips(shared_dataset, tmp_path, capsys):
    """The shared dataset's names give each frame's clip (<patient>-<clip>-<frame>): the clip-level view
    accuracy is printed beside the frame-level one, over every val clip the names give."""
    path, _, _ = tiny_checkpoint(tmp_path, **{"data.source": str(shared_dataset), "optim.ema": False})
    code, out, _ = cli([path, "--data", shared_dataset, "--split", "val", "--device", "cpu",
                        "--json", tmp_path / "r.json"], capsys)
    assert code == 0
    lines = [line.split()[0] for line in out.splitlines()[2:]]
    assert lines[lines.index("val.view_accuracy") + 1] == "val.view_clip_accuracy"
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    # the clips counted from the folder's names, as a user would: the name without its last '-<frame>'
    images = shared_dataset.parent / "valid" / "images"
    clips = {p.stem.rsplit("-", 1)[0] for p in images.glob("*.jpg")}
    assert metrics["val.n_clips"] == len(clips) and re.search(rf"val\.n_clips +{len(clips)}\n", out)
    # jet present per valve: every val clip counted once per valve, its positives those whose frames' label files
    # hold a box of the class (the files read here, as a user would)
    jet_clips: dict[str, set[str]] = {}
    for label_file in (shared_dataset.parent / "valid" / "labels").glob("*.txt"):
        for line in label_file.read_text().splitlines():
            if len(line.split()) >= 5:  # a box or polygon line (the view is a 3-number one-hot line)
                jet_clips.setdefault(line.split()[0], set()).add(label_file.stem.rsplit("-", 1)[0])
    for index, name in enumerate(("AR", "MR", "PR", "TR")):
        if not math.isfinite(metrics[f"val.jet_threshold_{name}"]):
            continue
        counts = [metrics[f"val.jet_clip_{k}_{name}"] for k in ("tp", "fp", "tn", "fn")]
        assert sum(counts) == len(clips) and counts[0] + counts[3] == len(jet_clips.get(str(index), set())), name
    assert re.search(r"val\.n_mixed_clips +\d+\n", out) and "val.clip_label_agreement" in out

    # frame and clip view accuracy recomputed by hand from the model's own probabilities on the val frames
    from collections import Counter

    from study.store.checkpoints import load_checkpoint, restore_model
    from trainables.data.loader import iterate_batches, load_data

    model, cfg = restore_model(load_checkpoint(path))
    data = load_data(cfg.data, seed=cfg.train.seed)
    probs, labels, names = [], [], []
    with torch.no_grad():
        for images, _, views, idx in iterate_batches(data, "val", 32):
            probs += model(images)[1].softmax(1).tolist()
            labels += views.tolist()
            names += [Path(f).stem.split("(")[0].rsplit("-", 1)[0] for f in data.files[idx]]  # <patient>-<clip>
    frame_right = [max(range(len(p)), key=p.__getitem__) == t for p, t in zip(probs, labels, strict=True)]
    assert metrics["val.view_accuracy"] == pytest.approx(sum(frame_right) / len(labels), abs=1e-9)
    right, mixed, agree = 0, 0, 0
    for clip in sorted(set(names)):
        members = [i for i, n in enumerate(names) if n == clip]
        votes = Counter(labels[i] for i in members)
        majority = min(votes, key=lambda v: (-votes[v], v))  # most frames; a tie: the lowest view
        mean = [sum(probs[i][v] for i in members) for v in range(len(probs[0]))]
        right += max(range(len(mean)), key=mean.__getitem__) == majority
        mixed += len(votes) > 1
        agree += votes[majority]
    assert metrics["val.view_clip_accuracy"] == pytest.approx(right / len(set(names)))
    assert metrics["val.n_mixed_clips"] == mixed and metrics["val.clip_label_agreement"] == pytest.approx(
        agree / len(labels))
