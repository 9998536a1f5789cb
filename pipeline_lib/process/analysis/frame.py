"""The analysis frame: which fields the analyses use, read from the data contract, and the
school context (school mean SES and SES centred within school) the models need."""

from __future__ import annotations

import pandas as pd

from pipeline_lib.contract.fields import SECTORS, SEXES, STUDENT_FIELDS
from pipeline_lib.process.analysis.base import AnalysisError

OUTCOME = "math_score"
# Every numeric student field, in contract order (math_score, ses and the optional ones).
NUMERIC = tuple(f.name for f in STUDENT_FIELDS if f.kind in ("float", "int"))
# Reference categories of the regression models: the first choice the contract lists.
REFERENCE = {"sector": SECTORS[0], "sex": SEXES[0], "minority": False}

# Columns of the frame the models read (one row per student, schools joined).
MODEL_COLUMNS = (
    "submission_id",
    "school_id",
    "sector",
    "school_size",
    "sex",
    "minority",
    *NUMERIC,
    "mean_ses",
    "cses",
)


def school_context(students: pd.DataFrame) -> pd.DataFrame:
    """`students` with `mean_ses` (the school's mean SES over its students in the data) and
    `cses` (SES centred on it), as the school-effects model defines them."""
    mean_ses = students.groupby("school_id", observed=True, sort=False)["ses"].transform("mean")
    return students.assign(mean_ses=mean_ses, cses=students["ses"] - mean_ses)


def require(condition: bool, message: str) -> None:
    """Raise `AnalysisError(message)` unless `condition`."""
    if not condition:
        raise AnalysisError(message)


def category_sizes(students: pd.DataFrame) -> dict[str, int]:
    """Per dummy term of the models (`sex[male]`, `minority[yes]`, `sector[private]`, ...): the
    students its estimate compares, the smaller of its category and the reference category. A
    term resting on fewer than k students is then suppressed like a small group."""
    sizes = {}
    for column, reference in REFERENCE.items():
        counts = students[column].value_counts()
        for category, count in counts.items():
            if category == reference:
                continue
            name = ("yes" if category else "no") if column == "minority" else str(category)
            sizes[f"{column}[{name}]"] = int(min(count, counts.get(reference, 0)))
    return sizes
