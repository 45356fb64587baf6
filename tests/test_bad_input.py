"""Bad input through every command: one clear line on stderr, exit status 2, never a traceback.

The malformed-dataset corpus (label rows, images, data.yaml) is in test_data_check.py; this file
covers command-line flags, config values, search-study arguments, Ray addresses, checkpoints and a
broken dataset met by the training commands.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from study import analyze, evaluate, export, run, train
from study.cli import run_cli

CASES = [
    # (command, argv, a phrase the one line must contain)
    (train, ["--arch", "triple"], "invalid choice: 'triple'"),
    (train, ["--imgsz", "100"], "must be a multiple of 32"),
    (train, ["--epochs", "0"], "train.epochs=0 must be >= 1"),
    (train, ["--batch", "0"], "data.batch=0 must be >= 1"),
    (train, ["--lr", "-0.1"], "optim.lr=-0.1 must be a positive number"),
    (train, ["--set", "balancer.alhpa=1"], "unknown keys ['balancer.alhpa']"),
    (train, ["--set", "optim.lr=fast"], "optim.lr='fast' is not a valid float"),
    (train, ["--set", "noequals"], "expected KEY=VALUE"),
    (train, ["--balancer", "magic"], "balancer.name='magic' is not one of"),
    (train, ["--arch", "dual", "--balancer", "gradnorm"], "has no shared weights to balance"),
    (train, ["--set", "model.cls_level=p9"], "model.cls_level='p9' is not one of"),
    (train, ["--data", "{tmp}/missing/data.yaml"], "data.yaml"),
    (train, ["--resume", "{tmp}/nothing.pt"], "no such checkpoint file"),
    (train, ["--resume", "{tmp}/corrupt.pt"], "not a readable checkpoint"),
    (train, ["--data", "{tmp}/broken/data.yaml"], "4 numbers on a line"),
    (run, ["--space", "nope"], "--space 'nope' is not one of"),
    (run, ["--scheduler", "asha", "--objective", "multi"], "--scheduler asha needs one objective"),
    (run, ["--samples", "0"], "--samples 0 skips the search: add --repeat-best 1 --seeds N"),
    (run, ["--samples", "-1"], "--samples -1 must be >= 0"),
    (run, ["--folds", "3"], "data.folds=3 splits by patient: set data.split=patient (study.run: --split patient)"),
    (run, ["--folds", "1", "--split", "patient"], "--folds 1: folds are whole patients: give --folds K >= 2"),
    (run, ["--data", "{tmp}/missing/data.yaml"], "cannot read the data.yaml"),  # after its folder was made
    (run, ["--max-concurrent", "0"], "--max-concurrent 0 must be at least 1"),
    (run, ["--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
    (run, ["--repeat-best", "-1"], "--repeat-best -1 must be >= 0"),
    (run, ["--address", "127.0.0.1:9"], "no Ray head node answers there"),
    (run, ["--address", "nonsense"], "expected HOST:PORT"),
    (run, ["--resume", "--name", "never-ran"], "there is no study"),
    (run, ["--set", "data.split=random"], "data.split='random' is not one of"),
    (run, ["--objective", "both"], "invalid choice: 'both'"),
    (run, ["--space", "compare", "--against", "shared/nope"], "--against shared/nope: not one of the study's methods"),
    (evaluate, ["{tmp}/corrupt.pt"], "not a readable checkpoint"),
    (evaluate, ["{tmp}/truncated.pt"], "not a readable checkpoint: the file is damaged, cut short, or not a PyTorch"),
    (evaluate, ["{tmp}/pickled.pt"], "not a readable checkpoint: it holds Python objects besides tensors"),
    (evaluate, ["{tmp}/foreign.pt"], "not a checkpoint written by this tool"),
    (export, ["{tmp}/corrupt.pt", "--onnx", "{tmp}/out.onnx"], "not a readable checkpoint"),
    (analyze, ["{tmp}/no-study"], ""),
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    (tmp_path / "corrupt.pt").write_bytes(b"\x00not a torch file")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    torch.save({"model": {"w": torch.zeros(64)}, "config": {}}, tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    torch.save({"model": {}, "config": {}, "path": Path("x")}, tmp_path / "pickled.pt")  # needs pickle to load
    broken = tmp_path / "broken"
    for split, stem in (("train", "p1-a"), ("val", "p2-b")):
        (broken / split / "images").mkdir(parents=True)
        (broken / split / "labels").mkdir(parents=True)
        from PIL import Image

        Image.new("RGB", (40, 30)).save(broken / split / "images" / f"{stem}.jpg")
        label = "0 0.5 0.5 0.2\n0 1 0" if split == "train" else "0 0.5 0.5 0.2 0.2\n0 1 0"  # one bad row
        (broken / split / "labels" / f"{stem}.txt").write_text(label)
    (broken / "data.yaml").write_text("path: .\ntrain: train/images\nval: val/images\nnames: [a]\n"
                                      "cls_names: [v0, v1, v2]\n")
    return tmp_path


@pytest.mark.parametrize(("command", "argv", "phrase"), CASES, ids=[f"{c.__name__.split('.')[-1]}-{i}"
                                                                     for i, (c, _, _) in enumerate(CASES)])
def test_bad_input_gives_one_clear_line(corpus, capsys, monkeypatch, command, argv, phrase):
    monkeypatch.chdir(corpus)  # studies/run outputs, if any, land in the temporary folder
    argv = [a.replace("{tmp}", str(corpus)) for a in argv]
    if command is run:
        argv = ["--storage", str(corpus / "studies"), *argv]
    try:
        code = run_cli(command.main, argv)
    except SystemExit as exit_:  # argparse's own exit
        code = exit_.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert len(lines) == 1, err
    assert lines[0].startswith("error"), err
    assert phrase in lines[0], err
    assert not (corpus / "studies" / "never-ran").exists()
    studies = corpus / "studies"  # a failed run leaves no empty study folder behind
    assert not studies.is_dir() or not list(studies.iterdir()), list(studies.iterdir())


def test_an_unreadable_checkpoint_is_our_one_sentence_never_torchs_advice_cut_short(corpus, capsys):
    """torch.load's weights_only error is a paragraph of advice; cut at 160 characters it ended mid-sentence."""
    for name in ("corrupt.pt", "truncated.pt", "pickled.pt"):
        assert run_cli(evaluate.main, [str(corpus / name)]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"error: {corpus / name}: not a readable checkpoint: ")
        assert line.endswith("; give a checkpoint.pt that study.run or study.train wrote"), line
        assert "weights_only" not in line and "PyTorch 2.6" not in line and "Unpickl" not in line, line


def test_the_corpus_is_large_enough():
    from tests import test_data_check

    data_cases = sum(1 for name in dir(test_data_check) if name.startswith("test_"))
    assert len(CASES) + data_cases >= 30
