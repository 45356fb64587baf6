"""The one exception the data layer raises for bad input: its message is the lines to show the user.

(study/errors.py is the commands' own: each layer names its errors ``errors``.)
"""

from __future__ import annotations

from trainables.data.labels import Problem

MAX_LINES = 50  # a dataset with thousands of broken files still gives a readable message


class DataError(ValueError):
    """A dataset that cannot be used. ``str(err)`` is one line per problem (at most ``MAX_LINES``)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:MAX_LINES]]
        if len(self.problems) > MAX_LINES:
            lines.append(f"... and {len(self.problems) - MAX_LINES} more problems of the same kinds")
        super().__init__("\n".join(lines))
