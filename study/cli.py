"""What every command shares: bad input becomes one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from study.errors import UsageError
from trainables.checkpoint_format import CHECKPOINT_FILE
from trainables.config import ConfigError

# The checkpoint argument of evaluate, export and predict: a file, or the numbered folder Tune keeps it in
CHECKPOINT_HELP = f"a {CHECKPOINT_FILE} (or the checkpoint_000004-style folder Tune keeps it in)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <what> (see --help)`` and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user as is."""
    from trainables.data.errors import DataError
    from trainables.models.transfer import WeightsError

    return (ConfigError, DataError, UsageError, WeightsError)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; user errors print ``prog: message`` on stderr and give exit status 2."""
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "study"
    try:
        return main(argv)
    except user_errors() as err:
        for line in str(err).splitlines() or [type(err).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def resolve_weights(config: dict[str, Any]) -> None:
    """Make ``model.weights`` absolute (trials may run in another directory) and check the file now,
    before any training starts: a bad path is one line at once, not an error in every trial."""
    from trainables.models.transfer import read_state_dict

    path = str(config.get("model.weights", "") or "")
    if path:
        resolved = Path(path).expanduser().resolve()
        read_state_dict(resolved)
        config["model.weights"] = str(resolved)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.02", "data.augment=false"]`` -> ``{"optim.lr": "0.02", ...}`` (typed by the config)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set balancer.alpha=1.5")
        out[key.strip()] = value.strip()  # a string; TrialConfig casts it to the field's type
    return out
