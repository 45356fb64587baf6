"""python -m study.bench balancers: every size's strategies against ``equal`` in one run, and the Markdown table."""

from __future__ import annotations

import pytest

from study.benchmarks.balancers import markdown, run

pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def test_each_size_times_its_strategies_against_equal():
    rows = run(imgsz=[32, 64], batch=2, steps=1, warmup=0, memory=False, only=["upgrad", "famo"])
    assert [(r["imgsz"], r["name"]) for r in rows] == [(px, n) for px in (32, 64) for n in ("equal", "famo", "upgrad")]
    for r in rows:
        assert r["step_s"] > 0 and r["balanced"]
        equal = next(e for e in rows if e["imgsz"] == r["imgsz"] and e["name"] == "equal")
        assert r["ratio"] == pytest.approx(r["step_s"] / equal["step_s"], rel=1e-2, abs=2e-3)  # both rounded
    assert all(r["ratio"] == 1.0 for r in rows if r["name"] == "equal")


def test_peak_memory_comes_from_a_process_of_its_own():
    rows = run(imgsz=32, batch=2, steps=1, warmup=0, memory=True, only=["rlw"])
    assert [r["name"] for r in rows] == ["equal", "rlw"]
    assert all(r["peak_mem_mb"] > 0 for r in rows)


def test_markdown_puts_the_sizes_side_by_side():
    rows = [{"name": "equal", "imgsz": 160, "ratio": 1.0, "peak_mem_mb": 800.4},
            {"name": "upgrad", "imgsz": 160, "ratio": 1.234, "peak_mem_mb": 812.6},
            {"name": "equal", "imgsz": 320, "ratio": 1.0, "peak_mem_mb": 1500.0},
            {"name": "upgrad", "imgsz": 320, "ratio": 1.1, "peak_mem_mb": 1530.2}]
    assert markdown(rows) == "\n".join([
        "| balancer | 160 px ratio | 160 px peak MiB | 320 px ratio | 320 px peak MiB |",
        "|---|---|---|---|---|",
        "| equal | 1.00 | 800 | 1.00 | 1500 |",
        "| upgrad | 1.23 | 813 | 1.10 | 1530 |",
    ])
    without_memory = [{k: v for k, v in r.items() if k != "peak_mem_mb"} for r in rows[:2]]
    assert markdown(without_memory).splitlines()[0] == "| balancer | 160 px ratio |"
