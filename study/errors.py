"""The one exception for what a user can fix: a bad flag, a missing file, a study folder in the way.

Raised by the commands and by the rooms below them (tuning/, store/, heldout/, media/); every command
runs through ``study.cli.run_cli``, which prints its message as ``error: ...`` lines and exits with
status 2 (as it does for the core's ``ConfigError``, ``DataError`` and ``WeightsError``). It lives here,
not in the command-line module, so a library module raising it imports nothing of argparse.

(trainables/data/errors.py is the data layer's own: each layer names its errors ``errors``.)
"""

from __future__ import annotations


class UsageError(ValueError):
    """A problem with the command line or with files the user named; the message is for the user."""
