"""One Ctrl-C stops the whole study, every phase, and leaves it resumable with ``--resume``.

Tune catches SIGINT itself while ``Tuner.fit`` runs: it stops the experiment, saves its state, logs a
warning and *returns*, as if the phase had finished. A study is several Tune phases in a row (the search,
the re-runs, each fold's), so the driver used to go on to the next one (measuring costs, the next fold)
after the user asked it to stop. And a ``fit`` that ended without a signal leaves Tune's handler installed,
so the first Ctrl-C of a later phase (the costs, measured with plain ``ray.get``) only set a flag of a Tune
run long over.

``fit`` runs one phase: ``HearInterrupt`` (a Tune callback, so Tune has installed its own SIGINT handler by
the time its ``setup`` runs) wraps that handler to note the signal, Tune saves as it always does, and then
``fit`` raises ``KeyboardInterrupt``: the command (study/run.py) says how to resume and exits 130. A second
Ctrl-C while Tune saves stops at once (Tune's handler restores Python's own). After every phase the SIGINT
handler from before it is put back.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from ray.tune import Callback

HEARD = threading.Event()  # module-level: a resumed study's callbacks are unpickled copies, not these objects


class HearInterrupt(Callback):
    """Notes a SIGINT that Tune's own handler then acts on (see the module docstring)."""

    def setup(self, **info: Any) -> None:
        tune_handler = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or not callable(tune_handler):
            return  # signals go to the main thread only; Tune installs none elsewhere either

        def heard(signum: int, frame: Any) -> None:
            HEARD.set()
            print("\ninterrupted: the study stops once Tune has saved this phase (Ctrl-C again: stop at once)",
                  file=sys.stderr, flush=True)
            tune_handler(signum, frame)

        signal.signal(signal.SIGINT, heard)


def fit(tuner: Any) -> Any:
    """``tuner.fit()``; raises ``KeyboardInterrupt`` when Ctrl-C stopped it (after Tune saved the phase)."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    HEARD.clear()
    try:
        result = tuner.fit()
    finally:
        if main and before is not None:
            signal.signal(signal.SIGINT, before)  # never Tune's handler of a finished phase
    if HEARD.is_set():
        raise KeyboardInterrupt
    return result
