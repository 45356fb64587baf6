"""How each held-out re-run computed (study/heldout/numerics.py): test_runs.parquet's eff.precision /
eff.memory_format, and the one line that says a study mixes them."""

from __future__ import annotations

import math

import pandas as pd

from study.heldout.numerics import mixed_numerics, recorded_numerics


def runs(*numerics: tuple, scored: list[bool] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame([{"trial_id": f"t{i}", "eff.precision": p, "eff.memory_format": m}
                          for i, (p, m) in enumerate(numerics)])
    return frame.assign(scored=scored) if scored is not None else frame


def test_one_precision_and_memory_format_is_no_mixture():
    assert mixed_numerics(runs(("bf16", "channels_last"), ("bf16", "channels_last"))) == ""
    assert mixed_numerics(pd.DataFrame()) == ""
    # a study from before the columns: nothing to say
    assert mixed_numerics(pd.DataFrame({"trial_id": ["a", "b"], "scored": [True, True]})) == ""
    # re-runs without a score do not count
    only_scored = runs(("bf16", "channels_last"), ("fp32", "contiguous"), scored=[True, False])
    assert mixed_numerics(only_scored) == ""
    # none recorded (nulls written by an old row): nothing to compare
    assert mixed_numerics(runs((None, None), (math.nan, math.nan))) == ""


def test_a_mixture_is_one_line_most_first():
    mixed = runs(*[("fp32", "contiguous")] * 1, *[("bf16", "channels_last")] * 2)
    assert mixed_numerics(mixed) == "bf16/channels_last (2 re-runs) and fp32/contiguous (1)"
    layouts = runs(("bf16", "channels_last"), ("bf16", "contiguous"))
    assert mixed_numerics(layouts) == "bf16/channels_last (1 re-run) and bf16/contiguous (1)"
    three = runs(("bf16", "channels_last"), ("bf16", "channels_last"), ("fp32", "contiguous"), (None, None))
    line = mixed_numerics(three)
    assert line == "bf16/channels_last (2 re-runs), fp32/contiguous (1) and not recorded (1)"
    assert "\n" not in line


def test_recorded_numerics_reads_the_trial_and_falls_back_to_its_checkpoint():
    row = {"eff.precision": "bf16", "eff.memory_format": "channels_last"}
    assert recorded_numerics(row) == row
    state = {"numerics": {"precision": "fp32", "memory_format": "contiguous"}}
    assert recorded_numerics({"eff.precision": math.nan}, state) == {"eff.precision": "fp32",
                                                                     "eff.memory_format": "contiguous"}
    assert recorded_numerics(pd.Series({"trial_id": "a"})) == {}
