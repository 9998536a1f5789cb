"""Multilevel models recover the parameters they were simulated from, and a fit that does not
converge is never returned as a result."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.process.analysis import multilevel
from pipeline_lib.process.analysis.base import AnalysisError, Failure
from pipeline_lib.process.analysis.multilevel import NullModel, SchoolEffectsModel
from tests.pipeline_lib.process.analysis import simulated


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    return simulated.students(30_000, 150, seed=21)


@pytest.fixture(scope="module")
def effects(students: pd.DataFrame) -> SchoolEffectsModel:
    fitted = multilevel.fit_school_effects(students)
    assert isinstance(fitted, SchoolEffectsModel), fitted
    return fitted


def _random_intercepts(n_schools: int, per_school: int, tau: float, sigma: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_schools), per_school)
    u = rng.normal(0, tau, n_schools)
    return pd.DataFrame(
        {
            "school_id": [f"S{s}" for s in school],
            "math_score": 60 + u[school] + rng.normal(0, sigma, len(school)),
        }
    )


def test_null_model_recovers_grand_mean_variances_and_icc() -> None:
    tau, sigma = 3.0, 6.0  # ICC = 9 / 45 = 0.2
    model = multilevel.fit_null(_random_intercepts(200, 60, tau, sigma, seed=5))
    assert isinstance(model, NullModel)
    assert abs(model.grand_mean - 60) < 3 * model.grand_mean_se
    # Variance estimates: within three approximate standard errors of the truth
    # (var of a variance estimate ~ 2 v^2 / df).
    assert abs(model.within_variance - sigma**2) < 3 * sigma**2 * math.sqrt(2 / (200 * 59))
    assert abs(model.between_variance - tau**2) < 3 * (tau**2 + sigma**2 / 60) * math.sqrt(2 / 199)
    assert model.icc == pytest.approx(0.2, abs=0.06)
    assert (model.n_students, model.n_schools) == (12_000, 200)
    assert model.attempts[-1].converged and model.optimizer == model.attempts[-1].optimizer


def test_school_effects_fixed_effects_are_within_three_standard_errors_of_the_truth(
    effects: SchoolEffectsModel,
) -> None:
    fixed = effects.fixed.set_index("term")
    assert set(fixed.index) == set(simulated.FIXED)
    for term, value in simulated.FIXED.items():
        assert abs(fixed.loc[term, "estimate"] - value) < 3 * fixed.loc[term, "se"], term


def test_school_effects_variance_components_are_near_the_truth(effects: SchoolEffectsModel) -> None:
    assert effects.residual_variance == pytest.approx(simulated.RESIDUAL_VARIANCE, rel=0.03)
    assert math.sqrt(effects.intercept_variance) == pytest.approx(simulated.INTERCEPT_SD, rel=0.25)
    assert math.sqrt(effects.slope_variance) == pytest.approx(simulated.SLOPE_SD, rel=0.3)
    assert effects.intercept_slope_correlation is not None
    assert -1 <= effects.intercept_slope_correlation <= 1


def test_random_effects_have_one_row_per_school_with_its_size(
    students: pd.DataFrame, effects: SchoolEffectsModel
) -> None:
    table = effects.random_effects
    sizes = students["school_id"].value_counts()
    assert list(table["school_id"]) == sorted(sizes.index)
    assert (table.set_index("school_id")["n"] == sizes.sort_index()).all()
    assert (table["intercept_se"] > 0).all() and (table["slope_se"] > 0).all()
    # BLUPs shrink towards zero: their spread is below the estimated intercept SD.
    assert table["intercept"].std() < math.sqrt(effects.intercept_variance)


def test_a_fit_that_does_not_converge_is_a_failure_listing_every_optimizer(students: pd.DataFrame) -> None:
    one_step = dict.fromkeys(multilevel.OPTIMIZERS, 1)
    failed = multilevel.fit_school_effects(students.head(5_000), maxiter=one_step)
    assert isinstance(failed, Failure)
    assert [a.optimizer for a in failed.attempts] == list(multilevel.OPTIMIZERS)
    assert not any(a.converged for a in failed.attempts)
    assert "no optimizer gave a usable REML fit" in failed.reason
    assert failed.n_students == 5_000


def test_the_next_optimizer_is_tried_when_the_first_does_not_converge(students: pd.DataFrame) -> None:
    fitted = multilevel.fit_null(students.head(5_000), optimizers=("lbfgs", "bfgs"), maxiter={"lbfgs": 1})
    assert isinstance(fitted, NullModel)
    assert [(a.optimizer, a.converged) for a in fitted.attempts] == [("lbfgs", False), ("bfgs", True)]
    assert fitted.optimizer == "bfgs"


def test_an_optimizer_that_raises_is_recorded_and_the_next_one_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Exploding:
        def fit(self, **kwargs: object) -> None:
            calls.append(kwargs["method"])
            raise np.linalg.LinAlgError("Singular matrix")

    fit, attempts, _ = multilevel.fit_with_fallback(Exploding, ("lbfgs", "nm"))
    assert fit is None and calls == [["lbfgs"], ["nm"]]
    assert all("LinAlgError: Singular matrix" in a.message for a in attempts)


def test_one_school_is_not_enough_for_a_multilevel_model() -> None:
    with pytest.raises(AnalysisError, match="at least 2 schools"):
        multilevel.fit_null(_random_intercepts(1, 50, 1.0, 1.0, seed=1))


def test_students_of_a_school_without_a_sector_are_left_out_not_taken_for_the_reference(
    students: pd.DataFrame,
) -> None:
    some = students.head(4_000).copy()
    unknown = some["school_id"] == some["school_id"].iloc[0]
    some.loc[unknown, "sector"] = None
    fitted = multilevel.fit_school_effects(some)
    assert isinstance(fitted, SchoolEffectsModel)
    assert fitted.n_students == int((~unknown).sum())


def test_an_analysts_school_effects_formula_equals_statsmodels_own_fit(students: pd.DataFrame) -> None:
    import statsmodels.formula.api as smf

    some = students.head(6_000).astype({"sector": str})
    fitted = multilevel.fit_school_effects(
        some, "math_score ~ ses + C(sector)", random_slope="ses", optimizers=("lbfgs",)
    )
    assert isinstance(fitted, SchoolEffectsModel), fitted
    direct = smf.mixedlm(
        "math_score ~ ses + C(sector, Treatment('public'))", some, groups=some["school_id"], re_formula="~ses"
    ).fit(reml=True, method="lbfgs")
    names = {t: t.replace("C(sector, Treatment('public'))[T.", "sector[") for t in direct.fe_params.index}
    estimates = fitted.fixed.set_index("term")["estimate"]
    assert list(estimates.index) == ["Intercept", "ses", "sector[catholic]", "sector[private]"]
    for term, value in direct.fe_params.rename(names).items():
        assert estimates[term] == pytest.approx(value, rel=1e-4, abs=1e-4), term
    assert fitted.formula == "math_score ~ ses + C(sector)" and fitted.random == "1 + ses | school_id"


@pytest.mark.parametrize(
    ("formula", "slope", "says"),
    [
        ("math_score ~ shoe_size", "cses", "names 'shoe_size', which is not a column"),
        ("math_score ~ cses", "shoe_size", "random slope 'shoe_size' is not a column"),
    ],
)
def test_a_school_effects_specification_that_cannot_be_fitted_says_why(
    students: pd.DataFrame, formula: str, slope: str, says: str
) -> None:
    from pipeline_lib.process.analysis.base import SpecificationError

    with pytest.raises(SpecificationError, match=says):
        multilevel.fit_school_effects(students.head(500), formula, random_slope=slope)
