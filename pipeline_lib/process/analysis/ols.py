"""OLS of `math_score` on `ses`, `sex`, `minority` and `sector` with heteroskedasticity-robust
(HC3) standard errors, by statsmodels. Categories are dummy-coded against the contract's first
choice (see `frame.REFERENCE`); a category no student has is left out rather than made a
column of zeros."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline_lib.contract.fields import SECTORS, SEXES
from pipeline_lib.process.analysis.frame import OUTCOME, REFERENCE, require

COLUMNS = ("ses", "sex", "minority", "sector")


@dataclass(frozen=True)
class OlsResult:
    coefficients: pd.DataFrame  # term, estimate, se, t, p, ci_low, ci_high
    r_squared: float
    adj_r_squared: float
    n: int
    df_resid: float
    cov_type: str
    reference: dict[str, object]
    left_out: tuple[str, ...]  # dummy terms with no student in their category


def design(students: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame, tuple[str, ...]]:
    """(outcome, design matrix with named columns, terms left out) for the complete cases."""
    complete = students.dropna(subset=[OUTCOME, *COLUMNS])
    X = pd.DataFrame({"Intercept": 1.0, "ses": complete["ses"].astype(float)}, index=complete.index)
    terms = [(f"sex[{s}]", complete["sex"] == s) for s in SEXES if s != REFERENCE["sex"]]
    terms.append(("minority[yes]", complete["minority"].astype(bool)))
    terms += [(f"sector[{s}]", complete["sector"] == s) for s in SECTORS if s != REFERENCE["sector"]]
    left_out = []
    for name, indicator in terms:
        if indicator.any() and not indicator.all():
            X[name] = indicator.astype(float)
        else:
            left_out.append(name)
    return complete[OUTCOME].to_numpy(dtype=float), X, tuple(left_out)


def fit_ols(students: pd.DataFrame) -> OlsResult:
    import statsmodels.api as sm

    y, X, left_out = design(students)
    require(len(y) > X.shape[1], f"OLS with {X.shape[1]} terms needs more than {X.shape[1]} complete records")
    fit = sm.OLS(y, X).fit(cov_type="HC3", use_t=True)
    ci = fit.conf_int(0.05)
    coefficients = pd.DataFrame(
        {
            "term": X.columns,
            "estimate": fit.params.to_numpy(),
            "se": fit.bse.to_numpy(),
            "t": fit.tvalues.to_numpy(),
            "p": fit.pvalues.to_numpy(),
            "ci_low": ci.iloc[:, 0].to_numpy(),
            "ci_high": ci.iloc[:, 1].to_numpy(),
        }
    )
    return OlsResult(
        coefficients=coefficients,
        r_squared=float(fit.rsquared),
        adj_r_squared=float(fit.rsquared_adj),
        n=len(y),
        df_resid=float(fit.df_resid),
        cov_type="HC3",
        reference=dict(REFERENCE),
        left_out=left_out,
    )
