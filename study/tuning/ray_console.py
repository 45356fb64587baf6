"""What Ray prints on a study's console that the tool does not use, silenced by name; nothing else is.

A study's console is the tool's own lines (one per epoch, the phases, the summary). Ray adds, unasked:

- Tune's experiment table, "View detailed results here" and "To visualize your results with TensorBoard, run:
  ..." — printed by Tune's newer output engine even at ``verbose=0`` (the tool writes no TensorBoard
  files a user is meant to open: trials.parquet and the report are the results). ``RAY_AIR_NEW_OUTPUT=0``
  selects Tune's other engine, which at ``verbose=0`` prints nothing (a user who sets the variable keeps
  theirs);
- timestamped log lines that say again what the tool says better, or advise what it does not do:
  "Token authentication is enabled ... Set RAY_AUTH_MODE=disabled to opt out" (the tool prints how to log in
  and never turns authentication off), "Started a local Ray instance. View the dashboard at ..." (the tool
  prints the dashboard's address), "Wrote the latest version of all result files ...", Tune's "The
  `process_trial_result` operation took 0.634 s, which may be a performance bottleneck ... consider reporting
  results less frequently" (on a busy machine: the tool reports once per epoch and times its epochs itself),
  on Ctrl-C Tune's "Stop signal received ..." and "Resume experiment with: Tuner.restore(...)" (the tool
  says what happens and how to resume with ``--resume``: study/tuning/interrupt.py, study/run.py), and on
  ``--resume`` "Restoring the run from the latest experiment state file: ..." (the tool says "search:
  resuming NAME" and "repeat-best: resuming NAME-repeats").

Those are dropped by their logger and the start of their text, at levels below ERROR only: an error Ray
logs, and every other warning, still reach the console.
"""

from __future__ import annotations

import logging
import os
import re

OUTPUT_ENGINE_ENV = "RAY_AIR_NEW_OUTPUT"
# logger -> how each message of it the tool replaces with its own line (or has no use for) begins
UNUSED = {
    "ray._private.authentication.authentication_token_setup": (r"Token authentication is enabled",),
    "ray._private.worker": (r"Started a local Ray instance\.", r"Connected to Ray cluster\."),
    "ray.tune.tune": (r"Wrote the latest version of all result files", r"Stop signal received",
                      r"Experiment has been interrupted"),
    "ray.tune.utils.util": (r"The `[\w.]+` operation took", r"Processing trial results took"),
    "ray.tune.execution.tune_controller": (r"Restoring the run from the latest experiment state file",),
}


class DropUnused(logging.Filter):
    """Drops a record below ERROR whose message begins as one of ``patterns`` (regular expressions)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not self.pattern.match(str(record.msg))


def quiet_ray_console() -> None:
    """Silence the messages above for this process (idempotent; call before ``ray.init``)."""
    os.environ.setdefault(OUTPUT_ENGINE_ENV, "0")
    for name, patterns in UNUSED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropUnused) for f in logger.filters):
            logger.addFilter(DropUnused(patterns))
