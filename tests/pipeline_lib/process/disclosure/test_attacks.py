"""The issue's four attacks, written as an attacker would, against the public view of documents
built by the real builders: each fails to recover the hidden value."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from tests.pipeline_lib.process.disclosure import population

# A lone student in school S0000, a school of 5 (q1, median, q3 would be 3 of its 5 scores).
SCHOOLS = [1, 5, 12, 20, 8, 30, 9, 25, 40]
LATER = dt.datetime(2026, 11, 29, 7, tzinfo=dt.UTC)


def _math(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("variable") == "math_score"]


def test_differencing_a_table_and_its_total_does_not_give_a_lone_students_score() -> None:
    frame = population.students(SCHOOLS)
    docs, protection = population.protected(frame)
    overall = _math(population.public_rows(docs, protection, "descriptives:overall", "statistics"))[0]
    schools = _math(population.public_rows(docs, protection, "descriptives:by_school", "statistics"))
    lone = next(r for r in schools if r["school_id"] == "S0000")
    assert lone["n"] is None and lone["mean"] is None
    shown = [r for r in schools if r["n"] is not None]
    rest_n = overall["n"] - sum(r["n"] for r in shown)
    rest_sum = overall["n"] * overall["mean"] - sum(r["n"] * r["mean"] for r in shown)
    truth = frame.loc[frame["school_id"] == "S0000", "math_score"].iloc[0]
    assert rest_n > 1  # the remainder is more than the lone student
    assert abs(rest_sum / rest_n - truth) > 0.5 and abs(rest_sum - truth) > 0.5
    for scope, column in (("by_sector", "sector"), ("by_sex", "sex"), ("by_minority", "minority")):
        rows = _math(population.public_rows(docs, protection, f"descriptives:{scope}", "statistics"))
        assert all(r["n"] is not None for r in rows) or sum(r["n"] is None for r in rows) != 1, column


def test_histogram_bins_do_not_prove_that_someone_scored_in_a_hidden_range() -> None:
    frame = population.students(SCHOOLS)
    docs, protection = population.protected(frame)
    bins = population.public_rows(docs, protection, "distribution:math_score", "histogram")
    hidden = [b for b in bins if b["n"] is None]
    truly_empty = {
        b["bin"]
        for b in hidden
        if not ((frame["math_score"] >= b["lower"]) & (frame["math_score"] < b["upper"])).any()
    }
    assert truly_empty  # hidden bins include empty ones: a hidden label proves nothing
    total = next(d for d in docs if d.key == "distribution:math_score").n_input
    remainder = total - sum(b["n"] for b in bins if b["n"] is not None)
    assert remainder == 0 or sum(1 for b in hidden) > 1  # never one bin's count by subtraction


def test_quantiles_of_a_group_of_five_are_not_shown() -> None:
    frame = population.students(SCHOOLS)
    docs, protection = population.protected(frame)
    schools = _math(population.public_rows(docs, protection, "descriptives:by_school", "statistics"))
    five = next(r for r in schools if r["school_id"] == "S0001")
    assert five["q1"] is None and five["median"] is None and five["q3"] is None
    assert "min" not in five and "max" not in five


def test_differencing_two_releases_does_not_give_a_late_students_score() -> None:
    frame = population.students(SCHOOLS)
    docs, first = population.protected(frame)
    late = population.students([1], seed=77).assign(school_id="S0002", sector="private")
    late["submission_id"] = ["late-1"]
    later = pd.concat([frame, late], ignore_index=True)
    docs2, second = population.protected(later, previous=first.release, now=LATER)
    before = _math(population.public_rows(docs, first, "descriptives:overall", "statistics"))[0]
    after = _math(population.public_rows(docs2, second, "descriptives:overall", "statistics"))[0]
    held = second.held_rows()
    for ref, (values, _) in held.items():  # the public view shows held rows' previous values
        if ref.key == "descriptives:overall" and values is not None and values[0] == "math_score":
            after = dict(
                zip(next(d for d in docs2 if d.key == ref.key).tables[0].columns, values, strict=True)
            )
    guess = after["n"] * after["mean"] - before["n"] * before["mean"]
    assert after["n"] == before["n"] and abs(guess - late["math_score"].iloc[0]) > 0.5
    # The previous public figure stays, with its date: not withheld. (The late student's school
    # was hidden beside the lone one before; publishing it now would give her sector's new sum,
    # so it stays hidden and the held sector cannot be added up again.)
    assert second.audit.passed, [f.reason for f in second.audit.failures]
    assert "descriptives:overall" not in second.withheld()
    assert any(ref.key == "descriptives:overall" for ref in held)
