"""Ray's console lines the tool does not use are dropped by logger and text; errors and other warnings stay
(study/tuning/ray_console.py). The end-to-end check, a study's real console, is in tests/test_interrupt.py."""

from __future__ import annotations

import logging
import os
import re

import pytest

from study.tuning.ray_console import OUTPUT_ENGINE_ENV, UNUSED, quiet_ray_console


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def tune_log(monkeypatch):
    monkeypatch.delenv(OUTPUT_ENGINE_ENV, raising=False)
    quiet_ray_console()
    quiet_ray_console()  # twice: one filter, not two
    logger = logging.getLogger("ray.tune.tune")
    kept = Kept()
    logger.addHandler(kept)
    yield logger, kept
    logger.removeHandler(kept)


def test_tunes_unused_lines_are_dropped_and_its_errors_and_other_warnings_kept(tune_log):
    logger, kept = tune_log
    assert os.environ[OUTPUT_ENGINE_ENV] == "0"  # Tune's table and TensorBoard hint: not printed at verbose=0
    assert len(logger.filters) == 1
    logger.info("Wrote the latest version of all result files and experiment state to '%s' in 0.01s.", "/x")
    logger.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.")
    logger.warning("Experiment has been interrupted, but the most recent state was saved.\nResume experiment "
                   "with: Tuner.restore(path=...)")
    logger.error("Wrote the latest version of all result files: disk full")  # an error is never dropped
    logger.warning("Trial trainable_1 has a non-serializable config")  # any other warning reaches the console
    assert kept.messages == ["ERROR Wrote the latest version of all result files: disk full",
                             "WARNING Trial trainable_1 has a non-serializable config"]


def test_every_silenced_line_is_one_this_ray_writes():
    """Loggers and texts are Ray's own: a module Ray renamed or a line it reworded would silence nothing, quietly."""
    import importlib
    import inspect

    from ray.tune.execution import tune_controller
    from ray.tune.utils.util import warn_if_slow

    for name, patterns in UNUSED.items():
        module = importlib.import_module(name)
        assert module.logger.name == name
        source = inspect.getsource(module)
        if name == "ray.tune.utils.util":  # warn_if_slow logs the text its callers give it
            source += inspect.getsource(tune_controller)
        for pattern in patterns:
            literal = re.sub(r"\\(.)", r"\1", pattern)
            if not re.search(r"[\[\]+*?]", literal):  # plain text: Ray's source holds it as written
                assert literal in source, (name, literal)
    slow = warn_if_slow.DEFAULT_MESSAGE.format(name="process_trial_result", duration=0.634)
    assert any(re.match(p, slow) for p in UNUSED["ray.tune.utils.util"]), slow


def test_tunes_slow_operation_advice_is_dropped(tune_log):
    logger = logging.getLogger("ray.tune.utils.util")
    kept = Kept()
    logger.addHandler(kept)
    try:
        logger.warning("The `process_trial_result` operation took 0.634 s, which may be a performance bottleneck.")
        logger.warning("Processing trial results took 0.634 s, which may be a performance bottleneck. Please "
                       "consider reporting results less frequently to Ray Tune.")
        logger.warning("Install psutil to monitor system performance.")
    finally:
        logger.removeHandler(kept)
    assert kept.messages == ["WARNING Install psutil to monitor system performance."]
