"""For any small population with tiny schools and groups: after suppression no hidden figure
can be narrowed below its protection interval (the LP audit, checked on every hidden cell)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_lib.process.disclosure import audit
from tests.pipeline_lib.process.disclosure import population

LATER = dt.datetime(2026, 11, 29, 7, tzinfo=dt.UTC)
school_sizes = st.lists(st.integers(min_value=1, max_value=14), min_size=2, max_size=9)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=school_sizes, seed=st.integers(0, 1_000))
def test_no_hidden_figure_is_narrower_than_its_protection_interval(sizes: list[int], seed: int) -> None:
    _, protection = population.protected(population.students(sizes, seed=seed))
    # Checked afresh, every small cell, not only those the suppression loop rechecked.
    report = audit.audit(protection.layout, protection.hidden, k=5, ratio=0.5)
    withheld = protection.withheld()
    if report.failures:  # fail closed: every failure withholds the documents it rests on
        assert withheld and all(any(f.reason in r for r in withheld.values()) for f in report.failures)
    assert all(i.ok for i in report.intervals if not any(i.cell == f.cell for f in report.failures))
    assert protection.audit.passed == report.passed


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=school_sizes, seed=st.integers(0, 1_000), school=st.integers(0, 8))
def test_one_late_student_cannot_be_told_apart_from_the_release_before(
    sizes: list[int], seed: int, school: int
) -> None:
    frame = population.students(sizes, seed=seed)
    _, first = population.protected(frame)
    home = frame[frame["school_id"] == f"S{school % len(sizes):04d}"].iloc[0]
    late = population.students([1], seed=seed + 1).assign(school_id=home["school_id"], sector=home["sector"])
    later = pd.concat([frame, late.assign(submission_id=["late-1"])], ignore_index=True)
    _, second = population.protected(later, previous=first.release, now=LATER)
    # Checked afresh: the held changes (fewer than k students) and every small hidden cell.
    report = audit.audit(
        second.layout, second.hidden, k=5, ratio=0.5, previous=first.release, held=second.held
    )
    if report.failures:
        withheld = second.withheld()
        assert withheld and all(any(f.reason in r for r in withheld.values()) for f in report.failures)
    assert all(i.ok for i in report.intervals if not any(i.cell == f.cell for f in report.failures))
    assert second.audit.passed == report.passed
