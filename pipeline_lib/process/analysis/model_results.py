"""Documents of the models (OLS, multilevel, classification, regression), built as
`descriptive_results` describes; a `Failure` becomes a document that says why there is no result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline_lib.contract import result_keys as keys
from pipeline_lib.process.analysis import interpret
from pipeline_lib.process.analysis.base import Failure
from pipeline_lib.process.analysis.classification import ClassificationResult
from pipeline_lib.process.analysis.descriptive_results import Stamp, document, failure_document, table
from pipeline_lib.process.analysis.frame import REFERENCE
from pipeline_lib.process.analysis.multilevel import NullModel, SchoolEffectsModel
from pipeline_lib.process.analysis.ols import OlsResult
from pipeline_lib.process.analysis.regression import RegressionResult
from pipeline_lib.process.results import ChartSpec, ResultDocument, ResultTable


def _fit_document(key: str, stamp: Stamp, summary: str, *, sampled: bool, **fields: Any) -> ResultDocument:
    """The document of a statsmodels fit (OLS and the multilevel models)."""
    return document(key, stamp, summary=summary, engine="statsmodels", sampled=sampled, **fields)


def ols_document(
    result: OlsResult | Failure,
    stamp: Stamp,
    term_sizes: Mapping[str, int],
    *,
    sampled: bool,
    key: str = keys.OLS,
    title: str | None = None,
    formula: str | None = None,
) -> ResultDocument:
    """The OLS document under `key`. A term's `n` is its category's size from `term_sizes` (the
    contract's groups, as the disclosure margins count them), else from the fit's complete cases."""
    if isinstance(result, Failure):
        return failure_document(
            key,
            stamp,
            result,
            engine="statsmodels",
            sampled=sampled,
            title=title,
            parameters={"formula": formula} if formula else None,
        )
    coefficients = _with_sizes(result.coefficients, {**result.term_sizes, **term_sizes}, result.n)
    fit = _named(
        "statistic",
        {
            "r_squared": result.r_squared,
            "adj_r_squared": result.adj_r_squared,
            "n": result.n,
            "df_resid": result.df_resid,
        },
    )
    robust = "" if result.cov_type == "nonrobust" else " robust"
    return _fit_document(
        key,
        stamp,
        interpret.ols(result),
        sampled=sampled,
        title=title,
        tables=[
            table(
                "coefficients",
                f"Coefficients ({result.cov_type}{robust} standard errors)",
                coefficients,
                size="n",
                labels=["term"],
            ),
            table("fit", "Fit", fit),
        ],
        chart=ChartSpec(table="coefficients", x="term", y="estimate", title="Coefficient"),
        parameters={
            "formula": result.formula,
            "cov_type": result.cov_type,
            "reference": result.reference,
            "left_out": list(result.left_out),
        },
    )


def null_model_document(model: NullModel | Failure, stamp: Stamp, *, sampled: bool) -> ResultDocument:
    if isinstance(model, Failure):
        return failure_document(keys.MIXEDLM_NULL, stamp, model, engine="statsmodels", sampled=sampled)
    estimates = _named(
        "quantity",
        {
            "grand_mean": model.grand_mean,
            "between_school_variance": model.between_variance,
            "within_school_variance": model.within_variance,
            "icc": model.icc,
            "reml_criterion": model.reml_criterion,
            "n_students": model.n_students,
            "n_schools": model.n_schools,
        },
    )
    estimates["se"] = [model.grand_mean_se, *[None] * (len(estimates) - 1)]
    total = model.between_variance + model.within_variance
    variance = pd.DataFrame(
        {
            "component": ["between schools", "within schools"],
            "variance": [model.between_variance, model.within_variance],
            "share": [model.between_variance / total, model.within_variance / total],
        }
    )
    return _fit_document(
        keys.MIXEDLM_NULL,
        stamp,
        interpret.null_model(model),
        sampled=sampled,
        tables=[
            table("estimates", "Estimates (REML)", estimates),
            table("variance", "Variance of math scores", variance),
        ],
        chart=ChartSpec(table="variance", x="component", y="share", title="Share of the variance"),
        parameters={"method": "REML", "optimizer": model.optimizer},
        warnings=_fit_notes(model),
    )


def school_effects_document(
    model: SchoolEffectsModel | Failure, stamp: Stamp, term_sizes: Mapping[str, int], *, sampled: bool
) -> ResultDocument:
    if isinstance(model, Failure):
        return failure_document(
            keys.MIXEDLM_SCHOOL_EFFECTS, stamp, model, engine="statsmodels", sampled=sampled
        )
    variance = _named(
        "component",
        {
            "intercept_variance": model.intercept_variance,
            "slope_variance": model.slope_variance,
            "intercept_slope_correlation": model.intercept_slope_correlation,
            "residual_variance": model.residual_variance,
        },
    )
    fit = _named(
        "statistic",
        {
            "reml_criterion": model.reml_criterion,
            "n_students": model.n_students,
            "n_schools": model.n_schools,
        },
    )
    return _fit_document(
        keys.MIXEDLM_SCHOOL_EFFECTS,
        stamp,
        interpret.school_effects(model, str(REFERENCE["sector"])),
        sampled=sampled,
        tables=[
            table(
                "fixed_effects",
                "Fixed effects",
                _with_sizes(model.fixed, term_sizes, model.n_students),
                size="n",
                labels=["term"],
            ),
            table("variance_components", "Variance components (REML)", variance),
            table("fit", "Fit", fit),
            table(
                "random_effects",
                "Predicted school effects (deviations from the fixed part, with SE)",
                model.random_effects,
                size="n",
                labels=["school_id"],
            ),
        ],
        chart=ChartSpec(table="fixed_effects", x="term", y="estimate", title="Fixed effect"),
        parameters={
            "method": "REML",
            "optimizer": model.optimizer,
            "formula": model.formula,
            "random": model.random,
            "reference_sector": REFERENCE["sector"],
        },
        warnings=_fit_notes(model),
    )


def _named(label: str, values: Mapping[str, Any]) -> pd.DataFrame:
    """One row per entry of `values`: its name in column `label`, then its `value`. Object dtype, so
    counts stay whole numbers beside the ratios."""
    return pd.DataFrame({label: list(values), "value": list(values.values())}, dtype=object)


def _fit_notes(model: NullModel | SchoolEffectsModel) -> list[str]:
    """What the fitting reported, and the optimizers tried before the one that gave the fit."""
    tried = [f"{a.optimizer} gave no usable fit: {a.message}" for a in model.attempts if not a.converged]
    return [*tried, *model.warnings]


def _with_sizes(terms: pd.DataFrame, sizes: Mapping[str, int], n: int) -> pd.DataFrame:
    """`terms` with `n` after `term`: the fewest students the term rests on (its own count, and
    its category's when it names one), else all `n`."""

    def size(term: str) -> int:
        return min(sizes.get(term, n), sizes.get(_category_of(term), n))

    column = terms["term"].map(size).astype("int64")
    return pd.concat([terms[["term"]], column.rename("n"), terms.drop(columns="term")], axis=1)


def _category_of(term: str) -> str:
    """'sector[catholic]:cses' -> 'sector[catholic]'."""
    return next((part for part in term.split(":") if "[" in part), term)


def classification_document(
    result: ClassificationResult | Failure, stamp: Stamp, *, engine: str, seed: int
) -> ResultDocument:
    if isinstance(result, Failure):
        return failure_document(keys.AT_RISK, stamp, result, engine=engine)
    metrics = pd.DataFrame(
        [
            (name, *result.metric(name), float(result.folds[f"baseline_{name}"].mean()))
            for name in ("auc", "balanced_accuracy", "brier")
        ],
        columns=["metric", "model", "model_se", "baseline"],
    )
    own_tables = [
        table(
            "calibration",
            "Calibration of out-of-fold probabilities",
            result.calibration,
            size="n",
            labels=["bin", "lower", "upper"],
        ),
        table(
            "importances", "Permutation importance (drop in ROC AUC)", result.importances, labels=["feature"]
        ),
    ]
    chart = ChartSpec(table="importances", x="feature", y="importance", title="Drop in ROC AUC when shuffled")
    own = {
        "cut": result.cut,
        "cut_quantile": result.cut_quantile,
        "prevalence": result.prevalence,
        "beats_baseline": result.beats_baseline,
    }
    metrics_table = table(
        "metrics", "Cross-validated metrics (mean over school-grouped folds)", metrics, labels=["metric"]
    )
    summary, tables = interpret.classification(result), [metrics_table, *own_tables]
    return _cross_validated_document(keys.AT_RISK, stamp, result, seed, summary, tables, chart, own)


def regression_document(
    result: RegressionResult | Failure, stamp: Stamp, *, engine: str, seed: int
) -> ResultDocument:
    if isinstance(result, Failure):
        return failure_document(keys.PREDICTION, stamp, result, engine=engine)
    r2 = result.folds["r2"].mean()
    metrics = pd.DataFrame(
        {
            "metric": ["rmse", "mae", "r2"],
            "model": [result.rmse, result.mae, r2],
            "baseline": [result.baseline_rmse, result.baseline_mae, None],
        }
    )
    skill, skill_se = result.skill
    metrics_table = table(
        "metrics", "Out-of-fold errors (model vs mean-only baseline)", metrics, labels=["metric"]
    )
    chart = ChartSpec(table="folds", x="fold", y="rmse", title="RMSE per fold")
    own = {"skill": skill, "skill_se": skill_se, "beats_baseline": result.beats_baseline}
    summary, tables = interpret.regression(result), [metrics_table]
    return _cross_validated_document(keys.PREDICTION, stamp, result, seed, summary, tables, chart, own)


def _cross_validated_document(
    key: str,
    stamp: Stamp,
    result: ClassificationResult | RegressionResult,
    seed: int,
    summary: str,
    tables: list[ResultTable],
    chart: ChartSpec,
    parameters: dict[str, Any],
) -> ResultDocument:
    """A model validated on school-grouped folds: its metrics table (first of `tables`), its folds,
    then its other tables; the parameters every such model reports, then its own."""
    folds = table("folds", "Folds", result.folds, size="n_test", labels=["fold"])
    common = {
        "model": result.model,
        "folds": len(result.folds),
        "n": result.n,
        "n_schools": result.n_schools,
        "features": list(result.features),
        "seed": seed,
    }
    return document(
        key,
        stamp,
        summary=summary,
        engine=result.engine,
        tables=[tables[0], folds, *tables[1:]],
        chart=chart,
        parameters=common | parameters,
    )
