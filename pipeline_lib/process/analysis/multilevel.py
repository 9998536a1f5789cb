"""Multilevel models of students within schools (statsmodels `MixedLM`, REML).

- The null model: a random intercept by school; grand mean, between- and within-school
  variances and the intraclass correlation.
- The school-effects model: `math_score ~ mean_ses * cses + sector * cses` with a random
  intercept and a random `cses` slope by school (`frame.school_context` defines both).

A fit is a result only if the optimizer converged and the estimates and their standard errors
are usable; otherwise the next optimizer is tried from scratch, and when none succeeds the
caller gets a `Failure` listing every attempt, never the estimates of a failed fit.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline_lib.contract import result_keys as keys
from pipeline_lib.process.analysis import ols
from pipeline_lib.process.analysis.base import Z_95, Attempt, Failure, SpecificationError
from pipeline_lib.process.analysis.frame import OUTCOME, require

OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm", "cg")
# Gradient methods converge in tens of iterations here; the derivative-free ones need more.
MAXITER: Mapping[str, int] = {"lbfgs": 300, "bfgs": 300, "cg": 300, "powell": 1000, "nm": 2000}
TIME_BUDGET = 900.0  # seconds for all attempts at one model; later optimizers are then skipped
# Warnings that make a converged fit unusable (standard errors would be meaningless).
FATAL_WARNINGS = ("not positive definite",)


@dataclass(frozen=True)
class NullModel:
    grand_mean: float
    grand_mean_se: float
    between_variance: float  # school intercept variance
    within_variance: float  # residual variance
    reml_criterion: float  # -2 x the REML log-likelihood
    n_students: int
    n_schools: int
    optimizer: str
    attempts: tuple[Attempt, ...]
    warnings: tuple[str, ...]

    @property
    def icc(self) -> float:
        return self.between_variance / (self.between_variance + self.within_variance)


@dataclass(frozen=True)
class SchoolEffectsModel:
    fixed: pd.DataFrame  # term, estimate, se, z, p, ci_low, ci_high
    intercept_variance: float
    slope_variance: float
    intercept_slope_correlation: float | None  # None when a variance is zero
    residual_variance: float
    reml_criterion: float
    n_students: int
    n_schools: int
    random_effects: pd.DataFrame  # school_id, n, intercept, intercept_se, slope, slope_se
    optimizer: str
    attempts: tuple[Attempt, ...]
    warnings: tuple[str, ...]
    formula: str = "math_score ~ mean_ses * cses + C(sector) * cses"
    random: str = "1 + cses | school_id"


SCHOOL_EFFECTS_FORMULA = "math_score ~ mean_ses * cses + C(sector) * cses"
RANDOM_SLOPE = "cses"  # each school's own slope of this variable, beside its own intercept


def school_effects_design(
    students: pd.DataFrame, formula: str = SCHOOL_EFFECTS_FORMULA
) -> tuple[np.ndarray, pd.DataFrame, tuple[str, ...]]:
    """(outcome, fixed-effects design, terms left out) of `formula` for the complete cases, as
    `ols.design` builds it (sector dummy-coded against `frame.REFERENCE`; a sector no school has
    is left out, with its interactions)."""
    return ols.design(students, formula)


def fit_null(
    students: pd.DataFrame,
    *,
    optimizers: Sequence[str] = OPTIMIZERS,
    maxiter: Mapping[str, int] | None = None,
) -> NullModel | Failure:
    from statsmodels.regression.mixed_linear_model import MixedLM

    data = students.dropna(subset=[OUTCOME])
    _require_schools(data)
    y, groups = data[OUTCOME].to_numpy(dtype=float), data["school_id"].astype(str).to_numpy()

    def model() -> MixedLM:
        return MixedLM(y, np.ones((len(y), 1)), groups)

    fit, attempts, caught = fit_with_fallback(model, optimizers, maxiter)
    if fit is None:
        return _failure(keys.MIXEDLM_NULL, attempts, len(y), caught)
    return NullModel(
        grand_mean=float(fit.fe_params[0]),
        grand_mean_se=float(fit.bse_fe[0]),
        between_variance=float(fit.cov_re[0, 0]),
        within_variance=float(fit.scale),
        reml_criterion=-2 * float(fit.llf),
        n_students=len(y),
        n_schools=len(np.unique(groups)),
        optimizer=attempts[-1].optimizer,
        attempts=attempts,
        warnings=caught,
    )


def fit_school_effects(
    students: pd.DataFrame,
    formula: str = SCHOOL_EFFECTS_FORMULA,
    *,
    random_slope: str = RANDOM_SLOPE,
    optimizers: Sequence[str] = OPTIMIZERS,
    maxiter: Mapping[str, int] | None = None,
) -> SchoolEffectsModel | Failure:
    """The school-effects model of `formula` (patsy's syntax, as OLS) on `students`, which carry
    `mean_ses` and `cses`, with a random intercept and a random `random_slope` slope by school."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    if random_slope not in students.columns:
        columns = ", ".join(map(str, students.columns))
        raise SpecificationError(f"the random slope {random_slope!r} is not a column; columns: {columns}")
    data = students.dropna(subset=[random_slope, "school_id"])
    y, X, left_out = school_effects_design(data, formula)
    data = data.loc[X.index]
    _require_schools(data)
    groups = data["school_id"].astype(str).to_numpy()
    Z = np.column_stack([np.ones(len(y)), data[random_slope].to_numpy(dtype=float)])

    def model() -> MixedLM:
        return MixedLM(y, X, groups, exog_re=Z)

    fit, attempts, caught = fit_with_fallback(model, optimizers, maxiter)
    if fit is None:
        return _failure(keys.MIXEDLM_SCHOOL_EFFECTS, attempts, len(y), caught)
    cov = np.asarray(fit.cov_re)
    correlation = None
    if cov[0, 0] > 0 and cov[1, 1] > 0:
        correlation = float(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]))
    fe, se = np.asarray(fit.fe_params), np.asarray(fit.bse_fe)
    z = fe / se
    from scipy import stats

    fixed = pd.DataFrame(
        {
            "term": list(X.columns),
            "estimate": fe,
            "se": se,
            "z": z,
            "p": 2 * stats.norm.sf(np.abs(z)),
            "ci_low": fe - Z_95 * se,
            "ci_high": fe + Z_95 * se,
        }
    )
    return SchoolEffectsModel(
        fixed=fixed,
        intercept_variance=float(cov[0, 0]),
        slope_variance=float(cov[1, 1]),
        intercept_slope_correlation=correlation,
        residual_variance=float(fit.scale),
        reml_criterion=-2 * float(fit.llf),
        n_students=len(y),
        n_schools=len(np.unique(groups)),
        random_effects=random_effects(fit, pd.Series(groups).value_counts()),
        optimizer=attempts[-1].optimizer,
        attempts=attempts,
        warnings=(*caught, *[f"left out (no school in that sector): {t}" for t in left_out]),
        formula=formula,
        random=f"1 + {random_slope} | school_id",
    )


def random_effects(fit, sizes: pd.Series) -> pd.DataFrame:
    """Predicted (BLUP) school intercept and slope deviations with their conditional standard
    errors, one row per school, ordered by school id."""
    effects, covariances = fit.random_effects, fit.random_effects_cov
    rows = []
    for school in sorted(effects):
        value, cov = np.asarray(effects[school]), np.asarray(covariances[school])
        rows.append(
            (
                school,
                int(sizes[school]),
                value[0],
                math.sqrt(max(cov[0, 0], 0.0)),
                value[1],
                math.sqrt(max(cov[1, 1], 0.0)),
            )
        )
    return pd.DataFrame(rows, columns=["school_id", "n", "intercept", "intercept_se", "slope", "slope_se"])


def fit_with_fallback(
    model: Callable[[], object],
    optimizers: Sequence[str],
    maxiter: Mapping[str, int] | None = None,
    time_budget: float = TIME_BUDGET,
) -> tuple[object | None, tuple[Attempt, ...], tuple[str, ...]]:
    """Fit by REML with each optimizer in turn, each from the default start, until one gives a
    usable fit: (the fit or None, every attempt, the warnings of the fit returned or of all)."""
    limits = {**MAXITER, **(maxiter or {})}
    attempts: list[Attempt] = []
    all_warnings: list[str] = []
    started = time.perf_counter()
    for optimizer in optimizers:
        if time.perf_counter() - started > time_budget:
            attempts.append(
                Attempt(optimizer, False, 0.0, f"skipped: the {time_budget:.0f} s budget was spent")
            )
            continue
        begun = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                limit = {"maxiter": limits[optimizer]} if optimizer in limits else {}
                fit = model().fit(reml=True, method=[optimizer], **limit)  # type: ignore[attr-defined]
                problem = _problem(fit, [str(w.message) for w in caught])
            except (np.linalg.LinAlgError, ValueError, ZeroDivisionError, FloatingPointError) as exc:
                fit, problem = None, f"{type(exc).__name__}: {exc}"
        messages = tuple(dict.fromkeys(_one_line(w.message) for w in caught))
        seconds = time.perf_counter() - begun
        attempts.append(Attempt(optimizer, problem is None, seconds, problem or "converged"))
        if problem is None:
            return fit, tuple(attempts), messages
        all_warnings += messages
    return None, tuple(attempts), tuple(dict.fromkeys(all_warnings))


def _problem(fit, messages: list[str]) -> str | None:
    """Why a finished fit is not usable, or None if it is."""
    if not fit.converged:
        return "the optimizer stopped before converging"
    fatal = next((m for m in messages if any(f in m for f in FATAL_WARNINGS)), None)
    if fatal:
        return _one_line(fatal)
    if not (np.all(np.isfinite(fit.fe_params)) and np.all(np.isfinite(fit.bse_fe))):
        return "fixed effects or their standard errors are not finite"
    cov = np.asarray(fit.cov_re, dtype=float)
    if not np.all(np.isfinite(cov)) or np.linalg.eigvalsh(cov).min() < -1e-8 * max(
        1.0, float(np.abs(cov).max())
    ):
        return "the random-effects covariance is not a valid covariance matrix"
    if not (np.isfinite(fit.scale) and fit.scale > 0):
        return "the residual variance is not positive"
    return None


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _require_schools(data: pd.DataFrame) -> None:
    n_schools = data["school_id"].nunique()
    require(
        n_schools >= 2, f"a multilevel model needs students in at least 2 schools; the data has {n_schools}"
    )
    require(len(data) > n_schools, "a multilevel model needs more students than schools")


def _failure(analysis: str, attempts: tuple[Attempt, ...], n: int, caught: tuple[str, ...]) -> Failure:
    tried = ", ".join(a.optimizer for a in attempts)
    last = attempts[-1].message if attempts else "no optimizer was given"
    return Failure(
        analysis=analysis,
        reason=f"no optimizer gave a usable REML fit (tried {tried}; last: {last})",
        attempts=attempts,
        n_students=n,
        warnings=caught,
    )
