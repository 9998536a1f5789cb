"""The keys of the documents in `processed`, named once.

A key is `<analysis>:<what>`. The process run writes every key of `ANALYSIS_KEYS` each run (a
failed analysis as a document with its error); the dashboards' documents follow. Readers (the
web app, the dashboards, the views) look documents up by these names, never by literals.
"""

from __future__ import annotations

DESCRIPTIVES_OVERALL = "descriptives:overall"
DESCRIPTIVES_BY_SECTOR = "descriptives:by_sector"
DESCRIPTIVES_BY_SEX = "descriptives:by_sex"
DESCRIPTIVES_BY_MINORITY = "descriptives:by_minority"
DESCRIPTIVES_BY_SCHOOL = "descriptives:by_school"
CORRELATIONS = "correlations:numeric"
OLS = "ols:math_score"
MIXEDLM_NULL = "mixedlm:null"
MIXEDLM_SCHOOL_EFFECTS = "mixedlm:school_effects"
AT_RISK = "classification:at_risk"
PREDICTION = "regression:math_score"

# Every key an analysis run writes, in the order reports show them.
ANALYSIS_KEYS = (
    DESCRIPTIVES_OVERALL,
    DESCRIPTIVES_BY_SECTOR,
    DESCRIPTIVES_BY_SEX,
    DESCRIPTIVES_BY_MINORITY,
    DESCRIPTIVES_BY_SCHOOL,
    CORRELATIONS,
    OLS,
    MIXEDLM_NULL,
    MIXEDLM_SCHOOL_EFFECTS,
    AT_RISK,
    PREDICTION,
)

# Documents the dashboards draw (written by the same run, not part of the analysis report).
REJECT_REASONS = "quality:reject_reasons"
TOP_CHANGES = "quality:top_changes"
SES_MATH_RELATION = "relation:ses_math"
SCHOOL_DISTRIBUTION = "distribution:schools"


def distribution(variable: str) -> str:
    """The key of one variable's histogram: `distribution:<variable>`."""
    return f"distribution:{variable}"
