"""Students simulated from a known school-effects model, for the analysis tests, the process
notebook test and the process benchmark: the true parameters are the constants below. Also the
model documents the real analyses give for such students."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline_lib.contract.fields import SECTORS
from pipeline_lib.process.analysis import classification, cv, model_results, multilevel, ols, regression
from pipeline_lib.process.analysis.descriptive_results import Stamp
from pipeline_lib.process.analysis.frame import category_sizes, school_context
from pipeline_lib.process.results import ResultDocument

GRAND_MEAN = 50.0
# Fixed effects of math_score ~ mean_ses * cses + sector * cses (sector against public).
FIXED = {
    "Intercept": GRAND_MEAN,
    "mean_ses": 5.0,
    "cses": 2.5,
    "mean_ses:cses": 1.0,
    "sector[catholic]": 2.0,
    "sector[catholic]:cses": -1.0,
    "sector[private]": 3.0,
    "sector[private]:cses": 0.5,
}
INTERCEPT_SD, SLOPE_SD, CORRELATION, RESIDUAL_SD = 2.5, 0.8, 0.3, 6.0
# Study hours (gamma(2, 3)) and minority status (p = 0.3) also move the score, independently of
# the model's terms: to the school-effects model they are residual variance.
STUDY_EFFECT, MINORITY_EFFECT = 0.4, -2.0
RESIDUAL_VARIANCE = RESIDUAL_SD**2 + STUDY_EFFECT**2 * 2 * 3.0**2 + MINORITY_EFFECT**2 * 0.3 * 0.7


def schools(n: int, seed: int = 1) -> pd.DataFrame:
    """`n` schools of the `schools` collection; sectors in turn, sizes from 50 to 2,000."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "school_id": [f"S{i:04d}" for i in range(1, n + 1)],
            "name": [f"School {i}" for i in range(1, n + 1)],
            "sector": [SECTORS[i % 3] for i in range(n)],
            "size": rng.integers(50, 2000, n),
        }
    )


def students(n: int, n_schools: int, seed: int = 1, *, informative: bool = True) -> pd.DataFrame:
    """`n` cleaned student records (fields of the data contract, schools joined as `sector` and
    `school_size`, with `mean_ses` and `cses`). With `informative=False` the score is noise that
    no field predicts."""
    rng = np.random.default_rng(seed)
    school = schools(n_schools, seed)
    which = rng.integers(0, n_schools, n)
    school_ses = rng.normal(0, 0.6, n_schools)
    frame = pd.DataFrame(
        {
            "submission_id": [f"sub{seed}-{i:08d}" for i in range(n)],
            "school_id": school["school_id"].to_numpy()[which],
            "sector": school["sector"].to_numpy()[which],
            "school_size": school["size"].to_numpy()[which].astype(float),
            "sex": rng.choice(np.array(["female", "male", "other"], dtype=object), n, p=[0.49, 0.49, 0.02]),
            "minority": rng.random(n) < 0.3,
            "ses": np.clip(school_ses[which] + rng.normal(0, 0.8, n), -5, 5),
        }
    )
    frame = school_context(frame)
    cses, mean_ses = frame["cses"].to_numpy(), frame["mean_ses"].to_numpy()
    cov = [
        [INTERCEPT_SD**2, CORRELATION * INTERCEPT_SD * SLOPE_SD],
        [CORRELATION * INTERCEPT_SD * SLOPE_SD, SLOPE_SD**2],
    ]
    u = rng.multivariate_normal([0, 0], cov, n_schools)[which]
    catholic = (frame["sector"] == "catholic").to_numpy(float)
    private = (frame["sector"] == "private").to_numpy(float)
    f = FIXED
    score = (
        f["Intercept"]
        + f["mean_ses"] * mean_ses
        + f["cses"] * cses
        + f["mean_ses:cses"] * mean_ses * cses
        + f["sector[catholic]"] * catholic
        + f["sector[catholic]:cses"] * catholic * cses
        + f["sector[private]"] * private
        + f["sector[private]:cses"] * private * cses
        + u[:, 0]
        + u[:, 1] * cses
        + rng.normal(0, RESIDUAL_SD, n)
    )
    study = rng.gamma(2.0, 3.0, n)
    if informative:
        score = score + STUDY_EFFECT * (study - 6) + MINORITY_EFFECT * frame["minority"].to_numpy(float)
    else:
        score = rng.normal(GRAND_MEAN, 10, n)
    frame["math_score"] = np.clip(score, -10, 100)
    # Optional fields: sometimes missing, as students leave them out.
    frame["age"] = np.where(rng.random(n) < 0.1, np.nan, rng.integers(11, 16, n).astype(float))
    frame["study_hours_week"] = np.where(rng.random(n) < 0.2, np.nan, np.round(study, 1))
    frame["absences"] = np.where(rng.random(n) < 0.15, np.nan, rng.poisson(4, n).astype(float))
    return frame


def cleaned_records(frame: pd.DataFrame) -> pd.DataFrame:
    """`students(...)` as documents of the `cleaned` collection (no school columns)."""
    records = frame[
        [
            "submission_id",
            "school_id",
            "sex",
            "minority",
            "ses",
            "math_score",
            "age",
            "study_hours_week",
            "absences",
        ]
    ].copy()
    records.insert(1, "received_at", "2026-11-29T06:00:00+00:00")
    records.insert(2, "source", "api")
    records["student_ref"] = None
    # As the clean step writes them: what it changed (here: every tenth SES had a decimal comma).
    comma = {"field": "ses", "before": "0,5", "after": "0.5", "rules": ["decimal_comma"]}
    records["changes"] = [[comma] if i % 10 == 0 else [] for i in range(len(records))]
    records["duplicates"] = [[] for _ in range(len(records))]
    records["duplicate_conflict"] = False
    return records


def descriptive_stats(variable: str, groups: dict[str, tuple[int, float]], by: str) -> pd.DataFrame:
    """Descriptive statistics of `variable` per group, as the descriptives analysis returns them:
    (students, mean) given, quartiles a point apart, `below_k` under 5 students."""
    return pd.DataFrame(
        [
            {
                by: g,
                "variable": variable,
                "n": n,
                "mean": m,
                "sd": 1.0,
                "min": m - 2,
                "q1": m - 1,
                "median": m,
                "q3": m + 1,
                "max": m + 2,
                "below_k": n < 5,
            }
            for g, (n, m) in groups.items()
        ]
    )


def model_documents(
    students: pd.DataFrame, stamp: Stamp, *, folds: int, seed: int, sampled: bool = False
) -> list[ResultDocument]:
    """OLS, null model, school effects (`sampled` as given), classification and regression documents."""
    sizes = category_sizes(students)
    school_folds = cv.assign_folds(students["school_id"].value_counts(), folds, seed=seed)
    return [
        model_results.ols_document(ols.fit_ols(students), stamp, sizes, sampled=False),
        model_results.null_model_document(multilevel.fit_null(students), stamp, sampled=False),
        model_results.school_effects_document(
            multilevel.fit_school_effects(students), stamp, sizes, sampled=sampled
        ),
        model_results.classification_document(
            classification.classify(students, school_folds, seed=seed),
            stamp,
            engine="scikit-learn",
            seed=seed,
        ),
        model_results.regression_document(
            regression.regress(students, school_folds), stamp, engine="scikit-learn", seed=seed
        ),
    ]
