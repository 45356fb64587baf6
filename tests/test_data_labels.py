"""The label-file parser: formats, the view-line rule, every per-line problem, and a round-trip property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainables.data.labels import (
    AMBIGUOUS,
    AREA,
    CLASS,
    COLUMNS,
    COORDS,
    NUMBER,
    ONEHOT,
    VIEW_INDEX,
    VIEW_MISSING,
    VIEW_TWICE,
    Problem,
    parse_label,
)


def test_regurgitation_style_polygon_blank_line_and_one_hot_without_trailing_newline():
    text = "3 0.38 0.41 0.52 0.41 0.52 0.57 0.38 0.57\n\n0 1 0"
    result = parse_label(text, nc=4, nv=3)
    assert result.problems == []
    np.testing.assert_allclose(result.label.boxes, [[3, 0.38, 0.41, 0.52, 0.57]], rtol=1e-6)
    assert result.label.view == 1


def test_centre_size_rows_several_detections_and_a_view_index_first():
    text = "2\n0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.1 0.1\n"
    result = parse_label(text, nc=4, nv=3)
    assert result.problems == []
    np.testing.assert_allclose(result.label.boxes, [[0, 0.4, 0.3, 0.6, 0.7], [1, 0.2, 0.7, 0.3, 0.8]], atol=1e-7)
    assert result.label.view == 2


def test_negative_image_has_no_boxes_but_a_view():
    result = parse_label("0 0 1\n", nc=4, nv=3)
    assert result.label.boxes.shape == (0, 5) and result.label.view == 2


def test_coordinates_slightly_outside_are_clipped():
    result = parse_label("0 0.5 0.5 1.0015 0.2\n1", nc=1, nv=2)  # x from -0.00075 to 1.00075
    assert result.problems == []
    np.testing.assert_allclose(result.label.boxes[0], [0, 0, 0.4, 1, 0.6], atol=1e-7)


def test_missing_view_line_still_returns_the_boxes_and_one_file_level_problem():
    result = parse_label("0 0.5 0.5 0.2 0.2", nc=1, nv=3, file="a.txt")
    assert result.label.view is None and len(result.label.boxes) == 1
    [problem] = result.problems
    assert problem.kind == VIEW_MISSING and problem.line == 0
    assert str(problem).startswith("a.txt: no view line")


@pytest.mark.parametrize(
    ("text", "kind", "line", "message"),
    [
        ("0 0.5 0.5 0.2\n0 1 0", COLUMNS, 1, "4 numbers on a line"),
        ("0 1 0\n0 .1 .1 .2 .1 .2 .2 .1", COLUMNS, 2, "8 numbers on a line"),
        ("0 0.5 abc 0.2 0.2\n0 1 0", NUMBER, 1, "'abc' (column 3) is not a finite number"),
        ("0 0.5 nan 0.2 0.2\n0 1 0", NUMBER, 1, "'nan' (column 3) is not a finite number"),
        ("7 0.5 0.5 0.2 0.2\n0 1 0", CLASS, 1, "class id 7 is not an integer in [0, 3]"),
        ("1.5 0.5 0.5 0.2 0.2\n0 1 0", CLASS, 1, "class id 1.5 is not an integer in [0, 3]"),
        ("0 0.5 0.5 1.4 0.2\n0 1 0", COORDS, 1, "coordinate -0.2 is outside [0, 1]"),
        ("0 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.3 0.2 1.2 0.9\n0 1 0", COORDS, 2, "coordinate 1.2 is outside [0, 1]"),
        ("0 0.5 0.5 0 0.2\n0 1 0", AREA, 1, "box width 0 / height 0.2 is not positive"),
        ("0 0.1 0.1 0.5 0.1 0.9 0.1\n0 1 0", AREA, 1, "zero-area box"),
        ("0 0.5 0.5 0.2 0.2\n0 0 0", ONEHOT, 2, "one-hot view line '0 0 0' has 0 ones"),
        ("1 1 0", ONEHOT, 1, "one-hot view line '1 1 0' has 2 ones"),
        ("0 1 0\n\n0 0 1", VIEW_TWICE, 3, "a second view line (the first is line 1)"),
        ("5", VIEW_INDEX, 1, "view index 5 is not an integer in [0, 2]"),
        ("0.5", VIEW_INDEX, 1, "view index 0.5 is not an integer in [0, 2]"),
    ],
)
def test_each_problem_is_one_line_with_file_line_what_and_fix(text, kind, line, message):
    result = parse_label(text, nc=4, nv=3, file="lab.txt")
    assert result.label is None
    [problem] = result.problems
    assert (problem.kind, problem.line) == (kind, line)
    shown = str(problem)
    assert shown.startswith(f"lab.txt:{line}: {message}")
    assert " — " in shown and "\n" not in shown


def test_one_hot_of_detection_length_is_the_view_line_because_as_a_box_it_has_no_area():
    # nv = 5: "0 0 1 0 0" also reads as "cls 0, cx 0, cy 1, w 0, h 0" - a zero-area box - so it is the view
    result = parse_label("0 0.5 0.5 0.2 0.2\n0 0 1 0 0", nc=1, nv=5)
    assert result.problems == [] and result.label.view == 2 and len(result.label.boxes) == 1


def test_broken_one_hot_of_detection_length_is_refused_as_ambiguous():
    # nv = 7: "0 0 0 1 0 1 1" is a valid triangle (class 0) or a one-hot line with three 1s
    result = parse_label("0 0 0 1 0 1 1\n3", nc=1, nv=7, file="f.txt")
    [problem] = result.problems
    assert problem.kind == AMBIGUOUS and problem.line == 1
    assert "ambiguous line '0 0 0 1 0 1 1'" in str(problem) and "single class index" in str(problem)


def test_the_same_triangle_with_a_view_count_that_cannot_collide_parses():
    result = parse_label("0 0 0 1 0 1 1\n1", nc=1, nv=3)
    assert result.problems == []
    np.testing.assert_array_equal(result.label.boxes, [[0, 0, 0, 1, 1]])


def test_problem_without_line_number_omits_it():
    assert str(Problem("x.jpg", 0, "bad", "fix it")) == "x.jpg: bad — fix it"


# ---- round trip: write random valid files, parse, get the same boxes and view --------------------------------
coordinate = st.integers(0, 1000).map(lambda i: i / 1000)


@st.composite
def label_files(draw):
    nc = draw(st.integers(1, 6))
    nv = draw(st.integers(2, 9))  # 9: a 4-corner polygon has 9 numbers too
    rows, boxes = [], []
    for _ in range(draw(st.integers(0, 4))):
        cls = draw(st.integers(0, nc - 1))
        xa, xb = sorted(draw(st.lists(coordinate, min_size=2, max_size=2, unique=True)))
        ya, yb = sorted(draw(st.lists(coordinate, min_size=2, max_size=2, unique=True)))
        if draw(st.booleans()):
            values = [cls, (xa + xb) / 2, (ya + yb) / 2, xb - xa, yb - ya]
        else:  # a polygon: the four corners plus up to 3 points inside, in a random order
            points = [(xa, ya), (xb, ya), (xb, yb), (xa, yb)]
            points += [(draw(st.floats(xa, xb)), draw(st.floats(ya, yb))) for _ in range(draw(st.integers(0, 3)))]
            points = draw(st.permutations(points))
            values = [cls, *[c for p in points for c in p]]
        rows.append(" ".join(repr(v) if isinstance(v, float) else str(v) for v in values))
        boxes.append([cls, xa, ya, xb, yb])
    view = draw(st.integers(0, nv - 1))
    view_line = " ".join("1" if i == view else "0" for i in range(nv)) if draw(st.booleans()) else str(view)
    lines = list(rows)
    lines.insert(draw(st.integers(0, len(rows))), view_line)
    lines = [line for row in lines for line in ([row, ""] if draw(st.booleans()) else [row])]  # blank lines
    text = "\n".join(lines) + ("\n" if draw(st.booleans()) else "")
    return text, nc, nv, np.array(boxes, np.float64).reshape(-1, 5), view, rows


@settings(max_examples=150, deadline=None)
@given(label_files())
def test_round_trip_of_random_valid_label_files(case):
    text, nc, nv, boxes, view, rows = case
    result = parse_label(text, nc=nc, nv=nv)
    view_shaped = [r for r in rows if len(r.split()) == nv and set(map(float, r.split())) <= {0.0, 1.0}]
    if view_shaped:  # a detection row made only of 0s and 1s with nv numbers: the rule refuses to guess
        assert [p.kind for p in result.problems] == [AMBIGUOUS] * len(view_shaped)
        return
    assert result.problems == []
    assert result.label.view == view
    np.testing.assert_allclose(result.label.boxes, boxes, atol=1e-6)
