"""`Beside`: a step in a thread from its start, its value or its error where it is asked for."""

from __future__ import annotations

import threading

import pytest

from pipeline_lib.process.beside import Beside


def test_it_runs_from_its_start_and_gives_its_value() -> None:
    started, go_on = threading.Event(), threading.Event()

    def step() -> int:
        started.set()
        assert go_on.wait(30)
        return 42

    beside = Beside(step, "step")  # returns while the step waits: it runs in its own thread
    assert started.wait(30) and not beside.done()
    go_on.set()
    assert beside.result() == 42 and beside.done()
    assert beside.result() == 42  # asked again: the same value, not a second run


def test_its_error_is_raised_where_the_result_is_asked_for() -> None:
    def step() -> int:
        raise ValueError("the scan failed")

    beside = Beside(step, "step")
    with pytest.raises(ValueError, match="the scan failed"):
        beside.result()
