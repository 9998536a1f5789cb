"""The pandas clean's pause of the cyclic garbage collector leaves it as it found it."""

from __future__ import annotations

import gc

import pytest

from pipeline_lib.clean.pandas_job import cyclic_collector_paused


def test_the_collector_is_off_inside_and_back_on_after_even_on_an_error() -> None:
    assert gc.isenabled()
    with cyclic_collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), cyclic_collector_paused():
        raise RuntimeError("the clean failed")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with cyclic_collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
