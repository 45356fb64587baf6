"""Parse one label file of the joint YOLO format: detection rows plus one view (image class) line.

A label file holds any number of detection rows and exactly one view line, in any order; blank
lines are ignored and the last line needs no newline. Zero detection rows is a valid negative.

Detection rows (coordinates normalised to [0, 1] of the image width / height):
    ``cls cx cy w h``                    5 numbers: a box by centre and size;
    ``cls x1 y1 x2 y2 ... xn yn``        an odd count >= 7 (n >= 3 points): a polygon, whose box
                                         is the min / max of its points.
View line (``nv`` = number of view classes, at least 2):
    ``0 1 0``                            one-hot: exactly ``nv`` tokens, each 0 or 1, one 1;
    ``2``                                a class index: exactly one token, an integer in [0, nv).

How a line is told apart (the rule, in this order):
1. One token: a view index. No detection row has one token.
2. ``nv`` tokens that are all 0 or 1 (a "view-shaped" line):
   a. exactly one 1: the one-hot view line. This is safe even when ``nv`` is 5 or an odd number
      >= 7, where the same tokens also fit a detection row: read as a box or polygon, a row whose
      coordinates are all 0 or 1 with at most one 1 among them has zero width or zero height
      (a positive width needs two different x values, i.e. a 0 and a 1, and a positive height
      needs a y equal to 1 as well - two 1s). Such a row would be rejected as a zero-area box, so
      reading it as the view line never throws away a valid detection.
   b. no 1 or several 1s, and ``nv`` is not a detection length: a broken one-hot line (error).
   c. no 1 or several 1s, and ``nv`` is a detection length (5 or odd >= 7): the line is either a
      broken one-hot line or a detection row whose numbers happen to be 0s and 1s. We do not
      guess: the file is refused as ambiguous, and the message says how to make it unambiguous
      (write the view as a single class index).
3. 5 tokens: a box; an odd count >= 7: a polygon.
4. Anything else: a wrong column count (error).

Errors are returned as :class:`Problem` lines, never raised, so a caller can collect every problem
of a dataset at once and decide which are fatal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainables.wording import counted

COORD_TOLERANCE = 1e-3  # coordinates within this of [0, 1] are clipped; further out is an error

# Problem kinds (the reader decides per kind whether it is fatal or skips the file).
COLUMNS = "columns"
NUMBER = "number"
CLASS = "class"
COORDS = "coords"
AREA = "area"
ONEHOT = "onehot"
AMBIGUOUS = "ambiguous"
VIEW_INDEX = "view_index"
VIEW_TWICE = "view_twice"
VIEW_MISSING = "view_missing"
TEXT = "text"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, shown to the user as one line.

    line: 1-based line number in ``file``; 0 when the problem is about the whole file.
    kind: a short code (e.g. ``"view_missing"``) that callers use for policy, never shown alone.
    """

    file: str
    line: int
    message: str
    fix: str
    kind: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message} — {self.fix}"


@dataclass(frozen=True)
class ParsedLabel:
    """A label file that parsed cleanly.

    boxes: (M, 5) float32 rows ``[class, x1, y1, x2, y2]``, normalised to [0, 1], in file order.
    view: the view class index, or None when the file has no view line.
    """

    boxes: np.ndarray
    view: int | None


@dataclass(frozen=True)
class LabelResult:
    """What :func:`parse_label` found: a label when ``problems`` is empty (view may still be None)."""

    label: ParsedLabel | None
    problems: list[Problem] = field(default_factory=list)


def is_detection_length(n_tokens: int) -> bool:
    return n_tokens == 5 or (n_tokens >= 7 and n_tokens % 2 == 1)


def parse_label(text: str, nc: int, nv: int, file: str = "<label>") -> LabelResult:
    """Parse the text of one label file (rules in the module docstring).

    nc: number of detection classes; nv: number of view classes (>= 2).
    A file without a view line parses (``view is None``) but carries a ``view_missing`` problem,
    so the caller can skip it or refuse it as the user chose.
    """
    problems: list[Problem] = []
    boxes: list[list[float]] = []
    view: int | None = None
    view_line = 0

    def bad(line: int, kind: str, message: str, fix: str) -> None:
        problems.append(Problem(file, line, message, fix, kind))

    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens:
            continue
        values = _numbers(tokens, file, number, problems)
        if values is None:
            continue
        shape, view_value = _view_of(values, nv, file, number, problems)
        if shape == "broken":
            continue  # _view_of reported it
        if shape == "view":
            if view_line:
                bad(number, VIEW_TWICE, f"a second view line (the first is line {view_line})",
                    "keep exactly one view line per label file")
            else:
                view, view_line = view_value, number
            continue
        if not is_detection_length(len(values)):
            bad(number, COLUMNS, f"{len(values)} numbers on a line",
                f"a detection row has 5 numbers (cls cx cy w h) or an odd count >= 7 (cls x1 y1 ... xn yn); "
                f"the view line has {nv} one-hot numbers or 1 class index")
            continue
        box = _detection(values, nc, file, number, problems)
        if box is not None:
            boxes.append(box)

    if problems:
        return LabelResult(None, problems)
    if view is None:
        problems.append(Problem(
            file, 0, "no view line (the image class is missing)",
            f"add one line with the view, one-hot ({nv} numbers, e.g. {_one_hot_example(nv)}) or a class index",
            VIEW_MISSING))
    array = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)  # (M, 5) cls, x1, y1, x2, y2
    return LabelResult(ParsedLabel(array, view), problems)


def _one_hot_example(nv: int) -> str:
    return " ".join(["0", "1"] + ["0"] * (nv - 2)) if nv >= 2 else "1"


def _numbers(tokens: list[str], file: str, line: int, problems: list[Problem]) -> list[float] | None:
    values = []
    for column, token in enumerate(tokens, start=1):
        try:
            value = float(token)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            problems.append(Problem(file, line, f"{token!r} (column {column}) is not a finite number",
                                    "labels hold numbers only, separated by spaces", NUMBER))
            return None
        values.append(value)
    return values


def _view_of(
    values: list[float], nv: int, file: str, line: int, problems: list[Problem]
) -> tuple[str, int]:
    """``("view", index)``, ``("broken", -1)`` after reporting why, or ``("row", -1)``: not a view line."""
    if len(values) == 1:
        v = values[0]
        if not v.is_integer() or not 0 <= v < nv:
            problems.append(Problem(file, line, f"view index {_fmt(v)} is not an integer in [0, {nv - 1}]",
                                    f"write the view as an integer 0..{nv - 1} or as {nv} one-hot numbers",
                                    VIEW_INDEX))
            return "broken", -1
        return "view", int(v)
    if len(values) != nv or any(v not in (0.0, 1.0) for v in values):
        return "row", -1
    ones = sum(1 for v in values if v == 1.0)
    if ones == 1:
        return "view", values.index(1.0)
    text = " ".join(_fmt(v) for v in values)
    if is_detection_length(nv):
        problems.append(Problem(
            file, line, f"ambiguous line '{text}': a one-hot view line with {ones} ones, or a detection row "
            f"of 0s and 1s ({nv} numbers fit both)",
            "write the view as a single class index (e.g. '1') so the line cannot be read two ways",
            AMBIGUOUS))
    else:
        problems.append(Problem(file, line, f"one-hot view line '{text}' has {ones} ones",
                                "a one-hot view line has exactly one 1", ONEHOT))
    return "broken", -1


def _detection(
    values: list[float], nc: int, file: str, line: int, problems: list[Problem]
) -> list[float] | None:
    """A detection row -> ``[class, x1, y1, x2, y2]`` clipped to [0, 1], or None after reporting why not."""
    cls = values[0]
    if not cls.is_integer() or not 0 <= cls < nc:
        problems.append(Problem(file, line, f"class id {_fmt(cls)} is not an integer in [0, {nc - 1}]",
                                f"use a class id 0..{nc - 1} (data.yaml names has {counted(nc, 'class')})", CLASS))
        return None
    coords = values[1:]
    if len(values) == 5:
        cx, cy, w, h = coords
        if w <= 0 or h <= 0:
            problems.append(Problem(file, line, f"box width {_fmt(w)} / height {_fmt(h)} is not positive",
                                    "remove the row or fix its size (cls cx cy w h)", AREA))
            return None
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        corners = [x1, y1, x2, y2]
    else:
        xs, ys = coords[0::2], coords[1::2]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        corners = coords
    lo, hi = min(corners), max(corners)
    if lo < -COORD_TOLERANCE or hi > 1 + COORD_TOLERANCE:
        outside = lo if lo < -COORD_TOLERANCE else hi
        problems.append(Problem(file, line, f"coordinate {_fmt(outside)} is outside [0, 1]",
                                "coordinates are fractions of the image width / height (normalise by pixels)",
                                COORDS))
        return None
    x1, y1, x2, y2 = (min(max(c, 0.0), 1.0) for c in (x1, y1, x2, y2))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        problems.append(Problem(file, line, "zero-area box (its points span no width or no height)",
                                "remove the row or give the box a positive width and height", AREA))
        return None
    return [cls, x1, y1, x2, y2]


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"
