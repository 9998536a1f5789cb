"""Release differencing: a public figure moves only when its group changed by at least k."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipeline_lib.process.disclosure import Release, RowRef
from pipeline_lib.process.disclosure.cells import STUDENTS, Cell, CellKey, Layout, Margin
from pipeline_lib.process.disclosure.releases import PublishedCell, hold_back
from tests.pipeline_lib.process.disclosure import population

SCHOOLS = [20, 25, 30, 35]
EVERYONE = CellKey(frozenset(), STUDENTS)
LATER = dt.datetime(2026, 11, 29, 7, tzinfo=dt.UTC)


def _late(frame: pd.DataFrame, school: str, count: int, seed: int = 9) -> pd.DataFrame:
    extra = population.students([count], seed=seed).assign(school_id=school, sector="public")
    extra["submission_id"] = [f"late-{seed}-{i}" for i in range(count)]
    return pd.concat([frame, extra], ignore_index=True)


def test_one_late_submission_leaves_the_previous_figures_with_their_date() -> None:
    frame = population.students(SCHOOLS)
    _, first = population.protected(frame)
    _, second = population.protected(_late(frame, "S0000", 1), previous=first.release, now=LATER)
    assert EVERYONE in second.held
    assert second.release.cells[EVERYONE] == first.release.cells[EVERYONE]
    assert second.release.cells[EVERYONE].published_at == population.WHEN
    assert second.audit.passed, second.audit.failures


def test_enough_new_students_update_the_figures_and_their_date() -> None:
    # Five new students would not do: split by sex or minority they make groups under k whose
    # changes the total's change would narrow down, so the audit holds the total too.
    frame = population.students(SCHOOLS)
    _, first = population.protected(frame)
    _, second = population.protected(_late(frame, "S0000", 60), previous=first.release, now=LATER)
    assert EVERYONE not in second.held and second.audit.passed
    assert second.release.cells[EVERYONE].published_at == LATER
    assert second.release.cells[EVERYONE].n == first.release.cells[EVERYONE].n + 60


def _sectors(sizes: dict[str, int], when: dt.datetime) -> tuple[Layout, Release]:
    cells = {EVERYONE: Cell(EVERYONE, float(sum(sizes.values())))}
    parts = []
    for sector, n in sizes.items():
        key = CellKey(frozenset({("sector", sector)}), STUDENTS)
        cells[key] = Cell(key, float(n))
        parts.append(key)
    layout = Layout(cells, [Margin(EVERYONE, tuple(parts), True)], [], {})
    release = Release({k: PublishedCell(c.n, {}, when) for k, c in cells.items()})
    return layout, release


def test_a_total_that_moves_while_one_part_is_held_holds_another_part() -> None:
    _, before = _sectors({"public": 50, "catholic": 40, "private": 30}, population.WHEN)
    # Five more public students, one more catholic: alone held, its change would be the total's
    # change less the public one's.
    layout, _ = _sectors({"public": 55, "catholic": 41, "private": 30}, LATER)
    kept = hold_back(before, layout, {}, k=5, now=LATER)
    catholic = CellKey(frozenset({("sector", "catholic")}), STUDENTS)
    private = CellKey(frozenset({("sector", "private")}), STUDENTS)
    assert kept.held == {catholic, private}  # private: the updated part with the least change
    assert kept.release.cells[EVERYONE].published_at == LATER


def test_held_rows_show_the_previous_values() -> None:
    frame = population.students(SCHOOLS)
    docs, first = population.protected(frame)
    _, second = population.protected(_late(frame, "S0000", 1), previous=first.release, now=LATER)
    overall = second.held_rows()[RowRef("descriptives:overall", "statistics", 0)]
    assert overall == (tuple(docs[0].tables[0].rows[0]), population.WHEN)


def test_a_release_round_trips_through_json() -> None:
    _, protection = population.protected(population.students(SCHOOLS))
    assert Release.from_dict(protection.release.to_dict()) == protection.release


def test_the_kept_release_leaves_out_the_rows_of_withheld_documents() -> None:
    from pipeline_lib.process.disclosure.stored import public_release

    _, protection = population.protected(population.students([1, 5, 12, 20, 8, 30]))
    kept = public_release(protection.release, {"descriptives:overall"})
    rows = [r for cell in kept.cells.values() for r in cell.rows]
    assert rows and all(r[0] != "descriptives:overall" for r in rows)
    assert any(
        r[0] == "descriptives:overall" for cell in protection.release.cells.values() for r in cell.rows
    )
    assert set(kept.cells) == set(protection.release.cells)
