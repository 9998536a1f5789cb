"""OLS of a formula an analyst writes (`math_score ~ ses + C(sex) + minority + C(sector)` by
default) with heteroskedasticity-robust standard errors, by statsmodels.

The formula is patsy's (as `statsmodels.formula.api`). Categories of the contract's fields are
dummy-coded against the contract's first choice (see `frame.REFERENCE`); a category no student
has is left out rather than made a column of zeros. Terms are named as the documents name them,
`sex[male]`, `minority[yes]`, `sector[private]:ses`, in the order the formula writes them.
A formula that names an unknown column or cannot be fitted is a `SpecificationError` saying why;
too few complete records for the terms is an `AnalysisError` (the data's fault).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.contract.fields import SECTORS, SEXES
from pipeline_lib.process.analysis.base import SpecificationError
from pipeline_lib.process.analysis.frame import REFERENCE, require

DEFAULT_FORMULA = "math_score ~ ses + C(sex) + minority + C(sector)"
COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3")
MAX_FORMULA_CHARS = 1_000
MAX_TERMS = 500  # columns of the design: far beyond a readable table, and a bound on the fit's memory
# The contract's categories, in its order: the first is each one's reference.
CATEGORIES: dict[str, tuple[object, ...]] = {"sex": SEXES, "sector": SECTORS}
COLUMNS = ("ses", "sex", "minority", "sector")  # the default formula's fields

_LEVEL = re.compile(r"^(?:C\(\s*(?P<call>\w+)[^\[]*\)|(?P<name>\w+))\[T\.(?P<level>.+)\]$")


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
    formula: str = DEFAULT_FORMULA
    # Per dummy term: the students its estimate compares (the smaller of its category and the
    # reference), so that a term resting on fewer than k students is suppressed like a small group.
    term_sizes: dict[str, int] = field(default_factory=dict)


def term_name(column: str) -> str:
    """patsy's column name as the documents write it: 'C(sex)[T.male]:ses' -> 'sex[male]:ses'."""
    parts = []
    for part in column.split(":"):
        found = _LEVEL.match(part)
        if found:
            level = found["level"]
            level = {"True": "yes", "False": "no"}.get(level, level)
            part = f"{found['call'] or found['name']}[{level}]"
        parts.append(part)
    return ":".join(parts)


def _prepared(students: pd.DataFrame) -> pd.DataFrame:
    """The contract's categories in contract order, so each one's reference is its first choice."""
    data = students.copy()
    for column, choices in CATEGORIES.items():
        if column not in data:
            continue
        if isinstance(data[column].dtype, pd.CategoricalDtype):  # recoded, not rebuilt value by value
            data[column] = data[column].cat.set_categories(list(choices))
        else:
            data[column] = pd.Categorical(data[column].astype(object), categories=list(choices))
    if "minority" in data and data["minority"].notna().all():
        # A categorical, not bool: patsy codes a categorical's integer codes at once, and checks a
        # bool column value by value (seconds at a million students).
        data["minority"] = pd.Categorical(data["minority"].astype(bool), categories=[False, True])
    return data


def design(
    students: pd.DataFrame, formula: str = DEFAULT_FORMULA
) -> tuple[np.ndarray, pd.DataFrame, tuple[str, ...]]:
    """(outcome, design matrix with named columns, terms left out) for the complete cases."""
    import patsy

    if len(formula) > MAX_FORMULA_CHARS:
        raise SpecificationError(
            f"the formula is {len(formula):,} characters long; at most {MAX_FORMULA_CHARS:,}"
        )
    try:
        described = patsy.ModelDesc.from_formula(formula)
    except patsy.PatsyError as exc:
        raise SpecificationError(f"the formula {formula!r} cannot be read: {_first_line(exc)}") from None
    if not described.lhs_termlist:
        raise SpecificationError(f"the formula {formula!r} has no outcome: write it as 'outcome ~ terms'")
    data = _prepared(students)
    used = [c for c in data.columns if re.search(rf"\b{re.escape(str(c))}\b", formula)]
    complete = data.dropna(subset=used).copy()
    for column in CATEGORIES:
        if column in used:
            complete[column] = complete[column].cat.remove_unused_categories()
    try:
        y, X = patsy.dmatrices(
            formula, complete, eval_env=_formula_names(), return_type="dataframe", NA_action="raise"
        )
    except patsy.PatsyError as exc:
        message = _first_line(exc)
        unknown = re.search(r"name '(\w+)' is not defined", message)
        if unknown:
            known = ", ".join(str(c) for c in students.columns)
            raise SpecificationError(
                f"the formula {formula!r} names {unknown[1]!r}, which is not a column; columns: {known}"
            ) from None
        raise SpecificationError(f"the formula {formula!r} cannot be evaluated: {message}") from None
    if y.shape[1] != 1:
        raise SpecificationError(
            f"the formula {formula!r} must have one numeric outcome, not {y.shape[1]} columns"
        )
    if X.shape[1] > MAX_TERMS:
        raise SpecificationError(f"the formula {formula!r} makes {X.shape[1]:,} terms; at most {MAX_TERMS}")
    X = _in_written_order(X, described)
    X.columns = [term_name(c) for c in X.columns]
    return y.iloc[:, 0].to_numpy(dtype=float), X, _left_out(complete, used, X.columns)


def _categorical(data: Any, contrast: Any = None, levels: Any = None) -> Any:
    """patsy's `C`, except that a pandas categorical without options passes through as it is:
    patsy codes a categorical by its integer codes at once, but checks a boxed one (`C(x)`) value
    by value, seconds per factor at a million students. The design matrix is the same."""
    from patsy.categorical import C

    if contrast is None and levels is None and isinstance(getattr(data, "dtype", None), pd.CategoricalDtype):
        return data
    return C(data, contrast, levels)


def _formula_names() -> Any:
    """What a formula may name besides the columns: patsy's own functions, with `C` as above, and
    numpy as `np` (as statsmodels' formulas allow)."""
    import patsy

    return patsy.EvalEnvironment([{"C": _categorical, "np": np}])


def _in_written_order(X: pd.DataFrame, described: object) -> pd.DataFrame:
    """patsy puts categorical terms before numeric ones; the table follows the formula instead."""
    info = X.design_info  # type: ignore[attr-defined]
    written = {term: i for i, term in enumerate(described.rhs_termlist)}  # type: ignore[attr-defined]
    order = sorted(info.terms, key=lambda t: written.get(t, len(written)))
    return X.iloc[:, [i for t in order for i in range(X.shape[1])[info.term_slices[t]]]]


def _left_out(complete: pd.DataFrame, used: list[str], terms: pd.Index) -> tuple[str, ...]:
    """The contract's categories (besides the reference) that no complete case has, or that every
    one has: their dummy would be all zeros or the intercept again."""
    gone = []
    for column, choices in {**CATEGORIES, "minority": (False, True)}.items():
        if column not in used:
            continue
        present = set(complete[column].dropna().unique())
        for choice in choices[1:]:
            name = ("yes" if choice else "no") if column == "minority" else str(choice)
            if f"{column}[{name}]" not in terms and (choice not in present or present == {choice}):
                gone.append(f"{column}[{name}]")
    return tuple(gone)


def _term_sizes(X: pd.DataFrame) -> dict[str, int]:
    """Per dummy term: min(students in its category, students in the reference of its factor)."""
    sizes = {}
    dummies = [c for c in X.columns if "[" in c]
    for column in dummies:
        factors = [p.split("[")[0] for p in column.split(":") if "[" in p]
        siblings = [c for c in dummies if [p.split("[")[0] for p in c.split(":") if "[" in p] == factors]
        inside = int((X[column] != 0).sum())
        reference = int((X[siblings] == 0).all(axis=1).sum())
        sizes[column] = min(inside, reference)
    return sizes


def fit_ols(students: pd.DataFrame, formula: str = DEFAULT_FORMULA, *, cov: str = "HC3") -> OlsResult:
    """The OLS fit of `formula` on the complete cases, with `cov` standard errors."""
    # Not statsmodels.api: that imports every model statsmodels has (0.35 s against 0.06 s).
    from statsmodels.regression.linear_model import OLS

    if cov not in COV_TYPES:
        raise SpecificationError(f"unknown standard errors {cov!r}; use one of {', '.join(COV_TYPES)}")
    y, X, left_out = design(students, formula)
    require(len(y) > X.shape[1], f"OLS with {X.shape[1]} terms needs more than {X.shape[1]} complete records")
    rank = np.linalg.matrix_rank(X.to_numpy())
    if rank < X.shape[1]:
        raise SpecificationError(
            f"the terms of {formula!r} are collinear ({X.shape[1]} terms, rank {rank}): drop a term "
            f"that repeats others"
        )
    fit = OLS(y, X).fit(cov_type=cov, use_t=True)
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
        cov_type=cov,
        reference=dict(REFERENCE),
        left_out=left_out,
        formula=formula,
        term_sizes=_term_sizes(X),
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
