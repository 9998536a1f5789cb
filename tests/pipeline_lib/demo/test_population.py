"""The demo population and its dirt, as pure functions: sizes, nesting, seeds, the dirt rate, what
the cleaner makes of every record, and that the simulated parameters can be recovered."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.clean.pandas_engine import clean
from pipeline_lib.contract.fields import FIELDS_BY_NAME, SCHOOL_FIELDS, STUDENT_FIELDS, normalize_school_id
from pipeline_lib.demo.dirt import KINDS, QUARANTINED_KINDS, RESUBMISSION, add_dirt
from pipeline_lib.demo.population import (
    OPTIONAL_FIELDS,
    TEXT_COLUMNS,
    Population,
    as_typed_text,
    generate_population,
)
from pipeline_lib.demo.rows import demo_rows

VALUE_NAMES = [f.name for f in STUDENT_FIELDS]


@pytest.fixture(scope="module")
def population() -> Population:
    return generate_population(3000, 40, seed=7)


@pytest.fixture(scope="module")
def large() -> Population:
    return generate_population(20_000, 120, seed=11)


def _as_raw(records: pd.DataFrame, prefix: str = "r") -> pd.DataFrame:
    """Records as the clean step finds them in `raw`, received in upload order."""
    return records.assign(
        submission_id=[f"{prefix}{i:07d}" for i in range(len(records))],
        received_at=[f"2026-11-29T00:00:{i // 100:02d}.{i % 100:02d}+00:00" for i in range(len(records))],
        source="bulk",
    )


def _same(left: object, right: object) -> bool:
    if left is None or (isinstance(left, float) and math.isnan(left)) or left is pd.NA:
        return right is None or (isinstance(right, float) and math.isnan(right)) or right is pd.NA
    if isinstance(left, float | int | np.number) and not isinstance(left, bool | np.bool_):
        return isinstance(right, float | int | np.number) and math.isclose(float(left), float(right))
    return left == right


def _differences(cleaned: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per cleaned record (rows aligned with `truth`), which contract values differ."""
    return pd.DataFrame(
        {
            name: [
                not _same(a, b)
                for a, b in zip(cleaned[name].astype(object), truth[name].astype(object), strict=True)
            ]
            for name in VALUE_NAMES
        }
    )


def test_population_has_the_requested_numbers_of_students_and_schools(population: Population) -> None:
    assert len(population.students) == 3000
    assert len(population.schools) == 40 and population.schools["school_id"].is_unique
    assert list(population.school_effects["school_id"]) == list(population.schools["school_id"])


def test_every_student_attends_a_listed_school_and_every_school_has_students(population: Population) -> None:
    listed = set(population.schools["school_id"])
    assert set(population.students["school_id"]) == listed


def test_schools_follow_the_contract(population: Population) -> None:
    fields = {f.name: f for f in SCHOOL_FIELDS}
    schools = population.schools
    assert set(schools["sector"]) <= set(fields["sector"].choices)
    assert schools["size"].between(fields["size"].minimum, fields["size"].maximum).all()
    assert all(normalize_school_id(code) == code for code in schools["school_id"])
    assert schools["name"].is_unique


def test_schools_are_the_same_for_every_seed_and_more_schools_extend_fewer() -> None:
    few, other_seed, more = (
        generate_population(50, n, seed).schools for n, seed in ((8, 1), (8, 2), (20, 1))
    )
    pd.testing.assert_frame_equal(few, other_seed)
    pd.testing.assert_frame_equal(few, more.iloc[:8])


def test_the_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    first, again, other = (demo_rows(500, 8, 0.2, seed)[1] for seed in (3, 3, 4))
    pd.testing.assert_frame_equal(first, again)
    assert not first[list(TEXT_COLUMNS)].equals(other[list(TEXT_COLUMNS)])
    assert first["submission_id"].is_unique
    assert set(first["submission_id"]).isdisjoint(other["submission_id"])


def test_typed_text_cleans_to_the_true_values_within_the_contract_ranges(population: Population) -> None:
    result = clean(_as_raw(as_typed_text(population.students)), set(population.schools["school_id"]))
    assert len(result.quarantine) == 0 and len(result.cleaned) == len(population.students)
    cleaned = result.cleaned.sort_values("submission_id").reset_index(drop=True)
    assert not _differences(cleaned, population.students).to_numpy().any()
    for name in ("ses", "math_score", "age", "study_hours_week", "absences"):
        f = FIELDS_BY_NAME[name]
        assert cleaned[name].dropna().between(f.minimum, f.maximum).all(), name


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.5, 1.0])
def test_the_share_of_dirty_records_is_close_to_the_rate_asked_for(
    population: Population, rate: float
) -> None:
    records = add_dirt(as_typed_text(population.students), rate, 1, population.schools["school_id"])
    share = records["dirt"].notna().mean()
    assert share == pytest.approx(rate, abs=0.01)
    assert (records["dirt"] != RESUBMISSION).sum() == len(population.students)


def test_every_kind_of_dirt_appears_and_changes_what_was_typed(population: Population) -> None:
    text = as_typed_text(population.students)
    records = add_dirt(text, 0.3, 2, population.schools["school_id"])
    assert set(records["dirt"].dropna()) == set(KINDS)
    meant = text.iloc[records["student"]].reset_index(drop=True)
    changed = ~(records[list(TEXT_COLUMNS)].fillna("\0") == meant.fillna("\0")).all(axis=1)
    dirty = records["dirt"].notna() & (records["dirt"] != RESUBMISSION)
    assert changed[dirty].all() and not changed[~dirty].any()


def test_the_cleaner_repairs_repairable_dirt_and_quarantines_the_rest(population: Population) -> None:
    records = add_dirt(as_typed_text(population.students), 0.3, 5, population.schools["school_id"])
    raw = _as_raw(records)
    result = clean(raw, set(population.schools["school_id"]))
    by_id = raw.set_index("submission_id")

    assert set(by_id.loc[result.quarantine["submission_id"], "dirt"]) <= QUARANTINED_KINDS
    assert len(result.quarantine) == records["dirt"].isin(QUARANTINED_KINDS).sum()
    # Exact resubmissions collapse into the record they repeat.
    assert len(result.cleaned) == len(population.students) - len(result.quarantine)

    kept = result.cleaned.reset_index(drop=True)
    kinds = by_id.loc[kept["submission_id"], "dirt"].to_numpy()
    truth = population.students.iloc[by_id.loc[kept["submission_id"], "student"]].reset_index(drop=True)
    differs = _differences(kept, truth)
    lost_token = kinds == "missing_token"
    assert not differs[~lost_token].to_numpy().any()
    # A missing-value token in an optional field loses that one value, nothing else.
    assert (differs[lost_token].sum(axis=1) <= 1).all()
    assert not differs.loc[lost_token, [n for n in VALUE_NAMES if n not in OPTIONAL_FIELDS]].to_numpy().any()


def _within_school_fit(students: pd.DataFrame, covariates: list[str]) -> dict[str, float]:
    """OLS with school fixed effects (values centred within each school), on complete cases."""
    data = students.dropna(subset=covariates).copy()
    data["female"] = (data["sex"] == "female").astype(float)
    data["other"] = (data["sex"] == "other").astype(float)
    data["minority"] = data["minority"].astype(float)
    names = [*covariates, "female", "other", "minority"]
    columns = [*names, "math_score"]
    centred = data[columns].astype(float) - data.groupby("school_id")[columns].transform("mean").astype(float)
    beta, *_ = np.linalg.lstsq(centred[names].to_numpy(), centred["math_score"].to_numpy(), rcond=None)
    return dict(zip(names, beta, strict=True))


def test_a_within_school_regression_recovers_the_simulated_ses_slope(large: Population) -> None:
    fit = _within_school_fit(large.students, ["ses", "study_hours_week", "absences"])
    truth = large.truth
    # Standard errors here are about 0.15 for SES (random slopes included) and 0.2 for the groups.
    assert fit["ses"] == pytest.approx(truth.ses_slope, abs=0.5)
    assert fit["minority"] == pytest.approx(truth.minority_effect, abs=0.8)
    assert fit["female"] == pytest.approx(truth.female_effect, abs=0.8)


def test_school_means_differ_by_sector_as_simulated(large: Population) -> None:
    scores = large.students.merge(large.schools[["school_id", "sector"]], on="school_id")
    by_school = scores.groupby(["school_id", "sector"])["math_score"].mean().groupby("sector").mean()
    # Private and catholic schools score higher: their own effect plus their richer intakes.
    assert by_school["private"] > by_school["catholic"] > by_school["public"]


def test_impossible_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        generate_population(0, 3, seed=1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        add_dirt(pd.DataFrame(columns=list(TEXT_COLUMNS)), 1.5, 1, ["1"])
