"""Every ``python -m study.*`` command in a fenced code block of README.md or docs/*.md parses as written:
its module exists, and the module's own argument parser accepts every flag, choice and value type. The
commands are not run (most need a data set, a cluster or an hour): each module's ``main`` is called with
the command's arguments and stopped the moment its parser returns. ``--set KEY=VALUE`` keys must be config
keys, which argparse cannot know."""

from __future__ import annotations

import argparse
import importlib
import shlex

import pytest

from tests.markdown_pages import ROOT, documented_commands, study_commands


def as_params() -> list[pytest.param]:
    return [pytest.param(module, argv, id=f"{page.relative_to(ROOT)}:{line} {module} {' '.join(argv)}"[:150])
            for page, line, module, argv in documented_commands()]


class Parsed(Exception):
    """Raised by the patched ``parse_args`` with the namespace the command's parser returned."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__("parsed")
        self.namespace = namespace


def parse_as_the_command_would(module: str, argv: list[str], monkeypatch) -> argparse.Namespace:
    """Call ``module.main(argv)`` and stop it right after its (top-level) argument parser parsed ``argv``;
    an argument the parser refuses exits with status 2 and argparse's message."""
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(real(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(Parsed) as parsed:
        importlib.import_module(module).main(argv)
    return parsed.value.namespace


@pytest.mark.parametrize(("module", "argv"), as_params())
def test_a_documented_command_parses(module, argv, monkeypatch, capsys):
    try:
        args = parse_as_the_command_would(module, argv, monkeypatch)
    except SystemExit as stop:
        pytest.fail(f"python -m {module} {shlex.join(argv)}: exit {stop.code}: {capsys.readouterr().err.strip()}")
    from trainables.config import TrialConfig

    keys = set(TrialConfig.flat_keys())
    unknown = [s for s in getattr(args, "set", None) or [] if s.partition("=")[0] not in keys]
    assert unknown == [], f"--set with keys that are not config keys: {unknown}"


def test_the_pages_show_the_commands_a_reader_runs():
    modules = {module for _, _, module, _ in documented_commands()}
    assert {"study.run", "study.analyze", "study.verdict", "study.evaluate", "study.export", "study.predict",
            "study.data", "study.train", "study.bench", "study.publish"} <= modules


def test_extraction_reads_shell_as_a_shell_would():
    block = ("$ OMP_NUM_THREADS=1 python -m study.bench peer --data d.yaml \\\n    --epochs 30 ...\n"
             "pip install -e \".[dev]\" && python -m study.run --space gradnorm   # the default study\n"
             "ray job submit --working-dir . -- python -m study.run --name 'a b' | tee log\n"
             "python -m pytest\n"
             "for px in 128 320; do python -m study.bench train --imgsz $px; done\n")
    assert study_commands(block) == [("study.bench", ["peer", "--data", "d.yaml", "--epochs", "30"]),
                                     ("study.run", ["--space", "gradnorm"]),
                                     ("study.run", ["--name", "a b"]),
                                     ("study.bench", ["train", "--imgsz", "128"])]


def test_a_flag_the_parser_lacks_is_refused(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        parse_as_the_command_would("study.verdict", ["results/x", "--no-such-flag"], monkeypatch)
    assert "--no-such-flag" in capsys.readouterr().err
    args = parse_as_the_command_would("study.bench", ["rungs", "results/x"], monkeypatch)  # a bench's own parser
    assert args.study == "results/x"
