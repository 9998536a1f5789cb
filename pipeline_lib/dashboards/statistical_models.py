"""The Models dashboard: the OLS and multilevel results in readable tables, the at-risk model's
metrics, calibration and importances, and the score prediction against its baseline.

Reads the documents of the processing step (`ols:math_score`, `mixedlm:*`,
`classification:at_risk`, `regression:math_score`); an analysis stored as a failure is shown as
such, with the reason the processing step gave, one withheld from public views says why, and one
shown as published earlier says since when.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.fields import SECTORS, SEXES
from pipeline_lib.dashboards import page
from pipeline_lib.dashboards.source import Results, load_results
from pipeline_lib.process.results import PublicResult
from pipeline_lib.views import html, plots
from pipeline_lib.views.palette import OKABE_ITO
from pipeline_lib.views.style import figure_html
from pipeline_lib.views.tables import table_frame

KEYS = (keys.OLS, keys.MIXEDLM_NULL, keys.MIXEDLM_SCHOOL_EFFECTS, keys.AT_RISK, keys.PREDICTION)
TIMES = "\u00d7"
# The models' reference categories: the first choice the contract lists (as the analyses do).
REFERENCE = {"sex": SEXES[0], "sector": SECTORS[0]}
WORDS = {
    "Intercept": "Intercept",
    "ses": "SES (per point)",
    "mean_ses": "School mean SES",
    "cses": "SES vs school mean",
    "minority[yes]": "Minority (vs not)",
    "intercept_variance": "Variance of school intercepts",
    "slope_variance": "Variance of school SES slopes",
    "intercept_slope_correlation": "Correlation of intercepts and slopes",
    "residual_variance": "Residual variance (within schools)",
    "auc": "ROC AUC (higher is better)",
    "balanced_accuracy": "Balanced accuracy (higher is better)",
    "brier": "Brier score (lower is better)",
    "rmse": "RMSE, points (lower is better)",
    "mae": "MAE, points (lower is better)",
    "r2": "R\u00b2 (higher is better)",
}
TERM_COLUMNS = {
    "term": "Term",
    "n": "Students behind it",
    "estimate": "Estimate",
    "se": "SE",
    "p": "p",
    "ci_low": "95% CI from",
    "ci_high": "to",
}
TERM_FORMATS = {
    "n": html.count,
    "estimate": html.number(2),
    "se": html.number(2),
    "p": html.p_value,
    "ci_low": html.number(2),
    "ci_high": html.number(2),
}


def load(client: DbApiClient, k: int) -> Results:
    """The Models dashboard's documents, as the public sees them."""
    return load_results(client, KEYS, k)


def term_words(term: str) -> str:
    """'sector[catholic]:cses' -> 'Sector: catholic (vs public) x SES vs school mean' (with a
    multiplication sign)."""
    parts = []
    for part in term.split(":"):
        if part in WORDS:
            parts.append(WORDS[part])
        elif "[" in part:
            field, _, value = part.rstrip("]").partition("[")
            against = f" (vs {REFERENCE[field]})" if field in REFERENCE else ""
            parts.append(f"{field.capitalize()}: {value}{against}")
        else:
            parts.append(part)
    return f" {TIMES} ".join(parts)


def _section(results: Results, key: str, title: str, body: Callable[[PublicResult], str]) -> str:
    """The section of one analysis: its `body` when it has a result, else a notice that it is not
    computed yet, is withheld from public views or was stored as a failure (with the reason), and
    above the body since when if it is shown as published earlier; nothing on a page without data."""
    if not results:
        return ""
    result = results.get(key)
    if result is None:
        return html.section(
            title, html.notice("Not computed yet: it appears after the next processing run.", "empty")
        )
    if key in results.withheld:
        return html.section(title, html.withheld(results.withheld[key]))
    if key in results.failed:
        return html.section(
            title,
            html.notice(
                result.summary or "The analysis has no result.", "warning", "No result in the last run."
            ),
        )
    held = html.not_updated(results.not_updated[key]) if key in results.not_updated else ""
    return html.section(title, held + body(result))


def _summary(result: PublicResult) -> str:
    return f"<p>{html.esc(result.summary)}</p>" if result.summary else ""


def _terms(result: PublicResult, name: str, *, k: int, alt: str) -> str:
    """A forest plot of the terms but the intercept, and the table of all terms."""
    terms = table_frame(result, name, needs=("term", "estimate", "ci_low", "ci_high"))
    if terms is None:
        return ""
    terms = terms.assign(term=terms["term"].map(term_words))
    plotted = terms[(terms["term"] != "Intercept") & ~terms["suppressed"]].dropna(subset=["estimate"])
    figure = plots.coefficients(plotted, x_label="Math score points (95% interval)")
    columns = {c: t for c, t in TERM_COLUMNS.items() if c in terms}
    return figure_html(figure, alt) + html.table(terms, columns=columns, formats=TERM_FORMATS, k=k)


def _statistics(result: PublicResult, name: str, key_column: str) -> dict[str, float]:
    table = table_frame(result, name, needs=(key_column, "value"))
    return {} if table is None else dict(zip(table[key_column], table["value"], strict=True))


def _ols(result: PublicResult, k: int) -> str:
    fit = _statistics(result, "fit", "statistic")
    cards = []
    if fit.get("r_squared") is not None:
        cards.append((f"{fit['r_squared']:.3f}", "R² (share of variance explained)"))
    if fit.get("n") is not None:
        cards.append((f"{int(fit['n']):,}", "students in the model"))
    reference = (
        f"Sex against {REFERENCE['sex']}, sector against {REFERENCE['sector']}; robust (HC3) standard errors."
    )
    body = _summary(result) + html.cards(cards) + f'<p class="wb-meta">{html.esc(reference)}</p>'
    return body + _terms(result, "coefficients", k=k, alt="Forest plot of the OLS coefficients")


@page.section
def ols_section(results: Results) -> str:
    """The OLS model: fit, reference categories, forest plot and table of the coefficients."""
    title = "Math score on SES, sex, minority and sector (OLS)"
    return _section(results, keys.OLS, title, lambda result: _ols(result, results.k))


def _null_model(result: PublicResult) -> str:
    values = _statistics(result, "estimates", "quantity")
    needed = {"icc", "grand_mean", "between_school_variance", "within_school_variance"}
    cards = (
        [
            (f"{values['icc']:.0%}", "of the variance lies between schools (ICC)"),
            (f"{values['grand_mean']:.1f}", "grand mean math score"),
            (f"{values['between_school_variance'] ** 0.5:.1f}", "SD of school means"),
            (f"{values['within_school_variance'] ** 0.5:.1f}", "SD of students within a school"),
        ]
        if needed <= values.keys()
        else []
    )
    return _summary(result) + html.cards(cards)


def _school_effects(result: PublicResult, k: int) -> str:
    body = _summary(result) + html.block(
        f'<p class="wb-meta">Math score on school mean SES {TIMES} SES relative to the school mean and '
        f"sector {TIMES} SES relative to the school mean, with a random intercept and a random SES slope "
        "per school (REML). Each school's predicted effects are on the Schools dashboard.</p>"
    )
    body += _terms(result, "fixed_effects", k=k, alt="Forest plot of the fixed effects")
    variance = table_frame(result, "variance_components", needs=("component", "value"))
    if variance is not None:
        body += html.table(
            variance.assign(component=variance["component"].map(term_words)),
            columns={"component": "Variance component", "value": "Estimate"},
            formats={"value": html.number(3)},
            k=k,
        )
    return body


@page.section
def multilevel_section(results: Results) -> str:
    """The multilevel models: the null model's variance split, the school-effects model's terms."""
    null = _section(
        results, keys.MIXEDLM_NULL, "Between and within schools (multilevel null model)", _null_model
    )
    effects = _section(
        results,
        keys.MIXEDLM_SCHOOL_EFFECTS,
        "School effects model: SES within and between schools",
        lambda result: _school_effects(result, results.k),
    )
    return null + effects


def _metrics(result: PublicResult, k: int) -> str:
    metrics = table_frame(result, "metrics", needs=("metric", "model", "baseline"))
    if metrics is None:
        return ""
    columns = {"metric": "Metric", "model": "Model", "model_se": "± SE", "baseline": "Baseline"}
    return html.table(
        metrics.assign(metric=metrics["metric"].map(lambda m: WORDS.get(m, m))),
        columns={c: t for c, t in columns.items() if c in metrics},
        formats={"model": html.number(3), "model_se": html.number(3), "baseline": html.number(3)},
        k=k,
    )


def _at_risk(result: PublicResult, k: int) -> str:
    figures = []
    calibration = table_frame(result, "calibration", needs=("mean_predicted", "observed_rate", "n"))
    if calibration is not None:
        shown = calibration[~calibration["suppressed"]]
        notes = html.row_notes(calibration, "risk bin", k)
        caption = "Bins of predicted risk whose figures are hidden are left out." + (
            f" {notes}" if notes else ""
        )
        figures.append(
            figure_html(plots.calibration(shown), "Calibration plot of the at-risk model", caption)
        )
    importances = table_frame(result, "importances", needs=("feature", "importance"))
    if importances is not None:
        figure = plots.bars(
            importances["feature"],
            importances["importance"],
            x_label="Drop in ROC AUC when shuffled",
            error=importances.get("sd"),
            fill=OKABE_ITO["orange"],
            value_format="{:.3f}",
            log=False,
            width=4.0,
        )
        figures.append(
            figure_html(
                figure,
                "Bar chart of permutation importances",
                "How much worse the model ranks students when a field is shuffled.",
            )
        )
    return _summary(result) + _metrics(result, k) + html.side_by_side(figures)


@page.section
def at_risk_section(results: Results) -> str:
    """The at-risk classifier: metrics against the baseline, calibration and importances."""
    title = "Students at risk of a low math score"
    return _section(results, keys.AT_RISK, title, lambda result: _at_risk(result, results.k))


@page.section
def prediction_section(results: Results) -> str:
    """The score regression: its errors on unseen schools against the baseline."""
    note = "Errors on schools the model was not trained on; the baseline predicts each training fold's mean."
    return _section(
        results,
        keys.PREDICTION,
        "Predicting math scores",
        lambda result: _summary(result) + _metrics(result, results.k) + f'<p class="wb-meta">{note}</p>',
    )
