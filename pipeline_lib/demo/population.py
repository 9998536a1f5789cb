"""A synthetic student population: schools, students nested in them, and the truth behind it.

Pure and seeded: the same arguments give the same frames. Math scores follow a two-level model
(school random intercepts and SES slopes, sector, sex, minority, study time and absences) whose
parameters are returned with the data, so tests and analyses can check they are recovered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.contract.fields import CONSENT, SECTORS, STUDENT_FIELDS

TEXT_COLUMNS = tuple(f.name for f in (*STUDENT_FIELDS, CONSENT))
OPTIONAL_FIELDS = tuple(f.name for f in STUDENT_FIELDS if not f.required)


@dataclass(frozen=True)
class Truth:
    """The parameters the population is drawn from (scores on the contract's 0-100 scale)."""

    intercept: float = 52.0
    ses_slope: float = 4.0
    sector_effects: Mapping[str, float] = field(
        default_factory=lambda: {"public": 0.0, "catholic": 3.0, "private": 5.0}
    )
    female_effect: float = -1.5
    other_sex_effect: float = 0.0
    minority_effect: float = -4.0
    study_hours_effect: float = 0.4
    absences_effect: float = -0.3
    school_intercept_sd: float = 5.0
    school_slope_sd: float = 1.5
    residual_sd: float = 9.0
    sector_shares: Mapping[str, float] = field(
        default_factory=lambda: {"public": 0.6, "catholic": 0.25, "private": 0.15}
    )
    # Richer families cluster in private and catholic schools: that is why a naive pooled
    # regression overstates the SES slope and a multilevel model is worth running.
    sector_mean_ses: Mapping[str, float] = field(
        default_factory=lambda: {"public": -0.15, "catholic": 0.2, "private": 0.6}
    )
    between_school_ses_sd: float = 0.4
    within_school_ses_sd: float = 0.8
    minority_ses_gap: float = -0.4
    # Share of students who leave each optional field blank (missing completely at random).
    missing_shares: Mapping[str, float] = field(
        default_factory=lambda: {"student_ref": 0.3, "age": 0.1, "study_hours_week": 0.25, "absences": 0.15}
    )


@dataclass(frozen=True)
class Population:
    schools: pd.DataFrame
    """The school reference data as the contract has it: school_id, name, sector, size."""
    school_effects: pd.DataFrame
    """Per school: school_id, mean_ses, minority_share, intercept_effect, slope_effect."""
    students: pd.DataFrame
    """One row per student, typed true values of the contract fields (blank optional fields NA)."""
    truth: Truth


_PLACES = (
    "Ashford", "Bramley", "Carlton", "Denholm", "Eastwood", "Fairview", "Glenmore", "Hillcrest",
    "Ivybridge", "Juniper", "Kingsley", "Lakeside", "Millbrook", "Northgate", "Oakridge", "Parkside",
    "Queensway", "Riverside", "Stonebridge", "Thornbury", "Upton", "Valley", "Westfield", "Yarrow",
)  # fmt: skip
_SAINTS = ("St. Mary's", "St. Joseph's", "St. Patrick's", "St. Anne's", "Holy Cross", "Sacred Heart")
_KINDS = {
    "public": ("High School", "Secondary School", "Community School", "Comprehensive"),
    "catholic": ("Catholic School", "College", "High School"),
    "private": ("Academy", "Preparatory School", "Grammar School", "International School"),
}


# Schools do not depend on the seed: school i is the same in every run, so another seed adds
# students to the same schools, and --schools 200 keeps the 120 of --schools 120.
SCHOOLS_SEED = 2026
MAX_SCHOOLS = 10_000


def _school_numbers(n: int) -> np.ndarray:
    """Distinct numbers in a fixed shuffled order: four digits first, then five."""
    rng = np.random.default_rng(SCHOOLS_SEED)
    numbers = np.concatenate(
        [rng.permutation(np.arange(1000, 10_000)), rng.permutation(np.arange(10_000, 100_000))]
    )
    return numbers[:n]


def _school(index: int, number: int, truth: Truth) -> dict[str, object]:
    rng = np.random.default_rng([SCHOOLS_SEED, index])
    sector = str(rng.choice(SECTORS, p=[truth.sector_shares[s] for s in SECTORS]))
    letters = "".join(chr(65 + int(c)) for c in rng.integers(0, 26, 2))
    # Mostly numeric codes (`4711`); a quarter with a letter prefix (`KL4711`).
    code = f"{letters}{number}" if rng.random() < 0.25 else str(number)
    first = rng.choice(_SAINTS) if sector == "catholic" and rng.random() < 0.6 else rng.choice(_PLACES)
    scale = {"public": 1.0, "catholic": 0.8, "private": 0.6}[sector]
    return {
        "school_id": code,
        "name": f"{first} {rng.choice(_KINDS[sector])}",
        "sector": sector,
        "size": int(np.clip(np.exp(rng.normal(6.4, 0.5)) * scale, 40, 5000).round()),
        "mean_ses": truth.sector_mean_ses[sector] + rng.normal(0, truth.between_school_ses_sd),
        "minority_share": rng.beta(2, 6),
        "intercept_effect": rng.normal(0, truth.school_intercept_sd),
        "slope_effect": rng.normal(0, truth.school_slope_sd),
    }


def _numbered_names(names: pd.Series) -> pd.Series:
    """Same-named schools exist; a district number tells them apart, as in real lists."""
    seen = names.groupby(names).cumcount()
    return names.where(seen == 0, names + " (" + (seen + 1).astype(str) + ")")


def generate_schools(n: int, truth: Truth) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(schools, school_effects) for the first `n` schools."""
    if not 1 <= n <= MAX_SCHOOLS:
        raise ValueError(f"the demo has 1 to {MAX_SCHOOLS} schools, not {n}")
    frame = pd.DataFrame([_school(i, int(number), truth) for i, number in enumerate(_school_numbers(n))])
    frame["name"] = _numbered_names(frame["name"])
    schools = frame[["school_id", "name", "sector", "size"]].copy()
    effects = frame[["school_id", "mean_ses", "minority_share", "intercept_effect", "slope_effect"]].copy()
    return schools, effects


def _allocate(n_students: int, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """School position per student, proportional to school size; every school gets at least one
    student when there are enough, so no school in the reference list is empty."""
    base = np.ones(len(sizes), dtype=int) if n_students >= len(sizes) else np.zeros(len(sizes), dtype=int)
    counts = base + rng.multinomial(n_students - base.sum(), sizes / sizes.sum())
    return rng.permutation(np.repeat(np.arange(len(sizes)), counts))


def _with_missing(values: pd.Series, share: float, rng: np.random.Generator) -> pd.Series:
    return values.mask(rng.random(len(values)) < share)


def generate_students(
    n: int, schools: pd.DataFrame, effects: pd.DataFrame, rng: np.random.Generator, truth: Truth
) -> pd.DataFrame:
    school = _allocate(n, schools["size"].to_numpy(dtype=float), rng)
    sector = schools["sector"].to_numpy()[school]
    minority = rng.random(n) < effects["minority_share"].to_numpy()[school]
    sex = rng.choice(np.array(["female", "male", "other"]), size=n, p=[0.49, 0.49, 0.02])
    ses_true = (
        effects["mean_ses"].to_numpy()[school]
        + truth.minority_ses_gap * minority
        + rng.normal(0, truth.within_school_ses_sd, n)
    )
    # Values are rounded as they are reported, and the score is drawn from the reported values,
    # so a regression on the submitted text recovers the parameters exactly in expectation.
    ses = np.clip(ses_true, -4.5, 4.5).round(2) + 0.0  # + 0.0 turns -0.0 into 0.0
    age = np.clip(rng.normal(15, 1.3, n).round(), 11, 19).astype(int)
    hours = (np.clip(rng.gamma(2.0, 2.5, n) + 0.6 * ses, 0, 40) * 2).round() / 2
    absences = np.clip(rng.poisson(np.exp(1.7 - 0.25 * ses)), 0, 366)
    sector_effect = np.array([truth.sector_effects[s] for s in sector])
    score = (
        truth.intercept
        + sector_effect
        + effects["intercept_effect"].to_numpy()[school]
        + (truth.ses_slope + effects["slope_effect"].to_numpy()[school]) * ses
        + truth.female_effect * (sex == "female")
        + truth.other_sex_effect * (sex == "other")
        + truth.minority_effect * minority
        + truth.study_hours_effect * hours
        + truth.absences_effect * absences
        + rng.normal(0, truth.residual_sd, n)
    )
    refs = 10**5 + rng.choice(max(900_000, 10 * n), size=n, replace=False)
    missing = truth.missing_shares
    return pd.DataFrame(
        {
            "school_id": schools["school_id"].to_numpy()[school],
            "student_ref": _with_missing(
                pd.Series(refs.astype(str), dtype=object), missing["student_ref"], rng
            ),
            "sex": sex,
            "minority": minority,
            "ses": ses,
            "math_score": np.clip(score, -10, 100).round(1) + 0.0,
            "age": _with_missing(pd.Series(age, dtype="Int64"), missing["age"], rng),
            "study_hours_week": _with_missing(pd.Series(hours), missing["study_hours_week"], rng),
            "absences": _with_missing(pd.Series(absences, dtype="Int64"), missing["absences"], rng),
            "consent": True,
        }
    )


def generate_population(students: int, schools: int, seed: int, truth: Truth | None = None) -> Population:
    """`students` students in `schools` schools, the same for the same arguments; the schools are
    the same whatever the seed."""
    if students < 1 or schools < 1:
        raise ValueError("a population needs at least one student and one school")
    truth = truth or Truth()
    rng = np.random.default_rng(seed)
    school_frame, effects = generate_schools(schools, truth)
    return Population(
        school_frame, effects, generate_students(students, school_frame, effects, rng, truth), truth
    )


def _text(values: pd.Series, render: Callable[[Any], str]) -> list[str | None]:
    return [None if pd.isna(v) else render(v) for v in values]


def as_typed_text(students: pd.DataFrame) -> pd.DataFrame:
    """The students as a careful student types them: canonical strings the cleaner leaves as they
    are, None for a blank optional field. Column order follows the contract."""
    yes_no = {True: "yes", False: "no"}
    renders: dict[str, Callable[[Any], str]] = {
        "school_id": str,
        "student_ref": str,
        "sex": str,
        "minority": yes_no.__getitem__,
        "ses": "{:.2f}".format,
        "math_score": "{:.1f}".format,
        "age": lambda v: str(int(v)),
        "study_hours_week": "{:g}".format,
        "absences": lambda v: str(int(v)),
        "consent": yes_no.__getitem__,
    }
    return pd.DataFrame(
        {name: pd.Series(_text(students[name], renders[name]), dtype=object) for name in TEXT_COLUMNS}
    )
