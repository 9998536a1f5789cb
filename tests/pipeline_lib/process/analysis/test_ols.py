"""OLS with HC3 standard errors equals its closed form, on data where the answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.process.analysis.base import AnalysisError
from pipeline_lib.process.analysis.ols import design, fit_ols
from tests.pipeline_lib.process.analysis import simulated


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    return simulated.students(4_000, 40, seed=11)


def test_coefficients_equal_the_closed_form_solution(students: pd.DataFrame) -> None:
    y, X, _ = design(students)
    closed = np.linalg.solve(X.T @ X, X.T @ y)
    result = fit_ols(students)
    np.testing.assert_allclose(result.coefficients["estimate"], closed, rtol=1e-9, atol=1e-9)
    assert list(result.coefficients["term"]) == list(X.columns)


def test_standard_errors_are_hc3_sandwich_estimates(students: pd.DataFrame) -> None:
    y, X, _ = design(students)
    x = X.to_numpy()
    bread = np.linalg.inv(x.T @ x)
    residual = y - x @ (bread @ x.T @ y)
    leverage = np.einsum("ij,jk,ik->i", x, bread, x)
    meat = x.T @ (x * (residual**2 / (1 - leverage) ** 2)[:, None])
    hc3 = np.sqrt(np.diag(bread @ meat @ bread))
    result = fit_ols(students)
    np.testing.assert_allclose(result.coefficients["se"], hc3, rtol=1e-9)
    t = result.coefficients["estimate"] / result.coefficients["se"]
    np.testing.assert_allclose(result.coefficients["t"], t, rtol=1e-9)


def test_r_squared_is_the_explained_share_of_variance(students: pd.DataFrame) -> None:
    y, X, _ = design(students)
    fitted = X.to_numpy() @ np.linalg.lstsq(X.to_numpy(), y, rcond=None)[0]
    r2 = 1 - np.sum((y - fitted) ** 2) / np.sum((y - y.mean()) ** 2)
    result = fit_ols(students)
    assert result.r_squared == pytest.approx(r2, rel=1e-9)
    assert result.n == len(students)


def test_a_known_linear_model_is_recovered_within_its_standard_errors() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    data = pd.DataFrame(
        {
            "ses": rng.normal(0, 1, n),
            "sex": rng.choice(["female", "male"], n),
            "minority": rng.random(n) < 0.3,
            "sector": rng.choice(["public", "catholic", "private"], n),
        }
    )
    truth = {
        "Intercept": 40.0,
        "ses": 3.0,
        "sex[male]": -1.0,
        "minority[yes]": -2.0,
        "sector[catholic]": 1.5,
        "sector[private]": 2.5,
    }
    # Heteroskedastic errors: their spread grows with ses, which HC3 allows for.
    noise = rng.normal(0, 1, n) * (2 + np.abs(data["ses"]))
    data["math_score"] = (
        truth["Intercept"]
        + truth["ses"] * data["ses"]
        + truth["sex[male]"] * (data["sex"] == "male")
        + truth["minority[yes]"] * data["minority"]
        + truth["sector[catholic]"] * (data["sector"] == "catholic")
        + truth["sector[private]"] * (data["sector"] == "private")
        + noise
    )
    coefficients = fit_ols(data).coefficients.set_index("term")
    for term, value in truth.items():
        row = coefficients.loc[term]
        assert abs(row["estimate"] - value) < 3 * row["se"], term


def test_a_category_no_student_has_is_left_out_not_a_column_of_zeros(students: pd.DataFrame) -> None:
    without_other = students[students["sex"] != "other"]
    result = fit_ols(without_other)
    assert "sex[other]" in result.left_out
    assert "sex[other]" not in set(result.coefficients["term"])


def test_too_few_records_for_the_terms_is_an_analysis_error(students: pd.DataFrame) -> None:
    with pytest.raises(AnalysisError, match="needs more than"):
        fit_ols(students.head(4))


def test_an_analysts_formula_equals_statsmodels_own_fit(students: pd.DataFrame) -> None:
    import statsmodels.formula.api as smf

    formula = "math_score ~ ses * C(sector) + study_hours_week"
    result = fit_ols(students, formula, cov="HC1")
    direct = smf.ols(
        "math_score ~ ses * C(sector, Treatment('public')) + study_hours_week",
        students.astype({"sector": str}),
    ).fit(cov_type="HC1")
    estimates = result.coefficients.set_index("term")["estimate"]
    assert list(estimates.index) == [
        "Intercept",
        "ses",
        "sector[catholic]",
        "sector[private]",
        "ses:sector[catholic]",
        "ses:sector[private]",
        "study_hours_week",
    ]
    renamed = {t: t.replace("C(sector, Treatment('public'))[T.", "sector[") for t in direct.params.index}
    for term, value in direct.params.rename(renamed).items():
        assert estimates[term] == pytest.approx(value, rel=1e-9, abs=1e-12), term
    assert result.n == int(direct.nobs) and result.cov_type == "HC1" and result.formula == formula


def test_a_category_term_rests_on_the_smaller_of_its_category_and_the_reference(
    students: pd.DataFrame,
) -> None:
    result = fit_ols(students, "math_score ~ C(school_id)")
    counts = students["school_id"].value_counts()
    reference = counts[sorted(counts.index)[0]]
    some = next(t for t in result.term_sizes if t.startswith("school_id["))
    assert result.term_sizes[some] == min(counts[some[len("school_id[") : -1]], reference)


@pytest.mark.parametrize(
    ("formula", "says"),
    [
        ("math_score ~ ses + shoe_size", "names 'shoe_size', which is not a column"),
        ("math_score ~ ses +", "cannot be read"),
        ("~ ses", "has no outcome"),
        ("math_score ~ ses + I(2 * ses)", "collinear"),
        ("math_score ~ " + " + ".join(["ses"] * 400), "characters long"),
    ],
)
def test_a_formula_that_cannot_be_fitted_says_why(students: pd.DataFrame, formula: str, says: str) -> None:
    with pytest.raises(AnalysisError, match=says):
        fit_ols(students, formula)


def test_unknown_standard_errors_are_refused(students: pd.DataFrame) -> None:
    with pytest.raises(AnalysisError, match="unknown standard errors 'HC9'"):
        fit_ols(students, cov="HC9")
