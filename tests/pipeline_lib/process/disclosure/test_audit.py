"""The audit: intervals of hidden figures by linear programming, failures with a reason."""

from __future__ import annotations

import numpy as np

from pipeline_lib.process.disclosure import audit, margins, suppression
from pipeline_lib.process.disclosure.cells import STUDENTS
from tests.pipeline_lib.process.disclosure import population

SCHOOLS = [1, 3, 7, 12, 2, 30, 40, 9, 5, 6, 25, 8]


def test_row_by_row_suppression_fails_the_audit_with_a_readable_reason() -> None:
    layout = margins.extract(population.documents(population.students([1, 20, 30, 25])))
    report = audit.audit(layout, suppression.primary(layout, 5), k=5, ratio=0.5)
    assert not report.passed
    lone = next(f for f in report.failures if ("school_id", "S0000") in f.cell.group)
    assert "can be narrowed to" in lone.reason and "school_id=S0000" in lone.reason


def test_a_pinned_figure_has_an_interval_of_width_zero() -> None:
    layout = margins.extract(population.documents(population.students([1, 20, 30, 25])))
    report = audit.audit(layout, suppression.primary(layout, 5), k=5, ratio=0.5)
    pinned = [i for i in report.intervals if i.figure.startswith("s(math_score) of school_id=S0000")]
    assert pinned and pinned[0].width < 0.05 and abs(pinned[0].low - pinned[0].value) < 0.05  # solver slack


def test_after_protection_every_small_cell_keeps_its_protection_interval() -> None:
    _, protection = population.protected(population.students(SCHOOLS))
    assert protection.audit.passed, protection.audit.failures
    assert protection.audit.intervals and all(i.ok for i in protection.audit.intervals)
    cells = protection.layout.cells
    small = [k for k, r in protection.hidden.items() if r == "small" and cells[k].modelled and cells[k].n > 0]
    assert {i.figure.split(" of ", 1)[1] for i in protection.audit.intervals} >= {k.label for k in small}
    # Empty hidden bins describe nobody: they are hidden, not checked.
    empty = [k for k, r in protection.hidden.items() if r == "small" and cells[k].n == 0]
    assert empty and not {i.figure.split(" of ", 1)[1] for i in protection.audit.intervals} & {
        k.label for k in empty
    }


def test_the_audit_of_120_schools_passes_when_checked_afresh() -> None:
    sizes = np.random.default_rng(3).integers(1, 60, 120)
    _, protection = population.protected(population.students(list(sizes)))
    again = audit.audit(protection.layout, protection.hidden, k=5, ratio=0.5)
    assert again.passed and again.programs > 0
    assert any(k.population == STUDENTS for k in protection.hidden)
