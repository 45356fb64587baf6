"""The recorder's progress counter counts each phase against its own total (issue 37).

The ``--repeat-best`` re-runs are a second Tune experiment whose recorder loads the search's rows from
trials.parquet: counting every finished row against the re-run experiment's total printed "[5/4 trials done]".
Driven here through the recorder's Tune hooks with stand-in trials (no Ray cluster).
"""

from __future__ import annotations

from types import SimpleNamespace

from study.tuning.recorder import ResultsRecorder, _progress_line
from trainables.config import TrialConfig

CONFIG = TrialConfig.from_partial({}).to_flat()


def _trial(tid: str, **meta: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={**CONFIG, **meta}, last_result=None, error_file=None)


def _run(recorder: ResultsRecorder, trial: SimpleNamespace) -> None:
    """One trial of two epochs: started, a running epoch, its last epoch (status finished), completed."""
    recorder.on_trial_start(0, [], trial)
    for epoch, status in ((1, "running"), (2, "finished")):
        result = {"epoch": epoch, "step": epoch, "status": status, "val.objective": 0.5, "time.epoch_s": 1.0}
        recorder.on_trial_result(0, [], trial, result)
    trial.last_result = result
    recorder.on_trial_complete(0, [], trial)


def _expected(n: int, unit: str) -> list[str]:
    """Two lines per trial: before it is done, and at its last epoch (the line that finishes it counts it)."""
    return [f"[{i + k}/{n} {unit} done]" for i in range(n) for k in (0, 1)]


def _heads(out: str) -> list[str]:
    return [line.split("]")[0] + "]" for line in out.splitlines() if line.startswith("[")]


def test_each_phase_counts_its_own_trials_against_its_own_total(tmp_path, capsys):
    search = ResultsRecorder(tmp_path, "gradnorm")
    search.setup(total_num_samples=4)
    for i in range(4):
        _run(search, _trial(f"s{i}"))
    assert _heads(capsys.readouterr().out) == _expected(4, "trials")

    reruns = ResultsRecorder(tmp_path, "gradnorm")  # the re-run experiment: 2 configurations x 2 seeds
    reruns.setup(total_num_samples=4)
    assert len(reruns.finished()) == 4  # the search's rows, read back from trials.parquet
    for i in range(4):
        _run(reruns, _trial(f"r{i}", **{"meta.repeat_of": f"s{i // 2}"}))
    assert _heads(capsys.readouterr().out) == _expected(4, "re-runs")  # was [4/4 trials done] ... [8/4 ...]
    assert reruns.done(reruns=True) == 4 and reruns.done(reruns=False) == 4


def test_a_resumed_rerun_phase_counts_the_reruns_it_already_finished(tmp_path, capsys):
    first = ResultsRecorder(tmp_path, "gradnorm")
    first.setup(total_num_samples=3)
    for i in range(3):
        _run(first, _trial(f"s{i}"))
    _run(first, _trial("r0", **{"meta.repeat_of": "s0"}))  # one re-run finished before the driver died
    capsys.readouterr()
    resumed = ResultsRecorder(tmp_path, "gradnorm")
    resumed.setup(total_num_samples=2)
    _run(resumed, _trial("r1", **{"meta.repeat_of": "s0"}))
    assert _heads(capsys.readouterr().out) == ["[1/2 re-runs done]", "[2/2 re-runs done]"]


def test_a_study_of_one_trial_says_trial():
    row = {"epoch": 1, "status": "finished", "val.objective": 0.5, "time.epoch_s": 1.0}
    assert _progress_line("t", row, 1, 1).startswith("[1/1 trial done] trial t epoch 1: objective 0.500")
    assert _progress_line("t", row, 1, 2, unit="re-run").startswith("[1/2 re-runs done] ")
