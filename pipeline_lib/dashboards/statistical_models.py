"""The Models dashboard: the OLS and multilevel results in readable tables, the at-risk model's
metrics, calibration and importances, and the score prediction against its baseline.

Reads the documents of the processing step (`ols:math_score`, `mixedlm:*`,
`classification:at_risk`, `regression:math_score`); an analysis stored as a failure is shown as
such, with the reason the processing step gave.
"""

from __future__ import annotations

from pipeline_lib.client.sync import DbApiClient
from pipeline_lib.contract.fields import SCHOOL_FIELDS, STUDENT_FIELDS
from pipeline_lib.dashboards.source import Results, load_results
from pipeline_lib.process.results import PublicResult
from pipeline_lib.views import frames, html, plots
from pipeline_lib.views.style import OKABE_ITO, figure_html

OLS, NULL, EFFECTS = "ols:math_score", "mixedlm:null", "mixedlm:school_effects"
AT_RISK, PREDICTION = "classification:at_risk", "regression:math_score"
KEYS = (OLS, NULL, EFFECTS, AT_RISK, PREDICTION)
TIMES = "\u00d7"
# The models' reference categories: the first choice the contract lists (as the analyses do).
REFERENCE = {
    "sex": next(f.choices[0] for f in STUDENT_FIELDS if f.name == "sex"),
    "sector": next(f.choices[0] for f in SCHOOL_FIELDS if f.name == "sector"),
}
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


def _failed(results: Results, key: str, title: str) -> str | None:
    """The section when the analysis has no result (not run yet, or stored as a failure)."""
    result = results.get(key)
    if result is None:
        return html.section(
            title, html.notice("Not computed yet: it appears after the next processing run.", "empty")
        )
    if key in results.failed:
        return html.section(
            title,
            html.notice(
                result.summary or "The analysis has no result.", "warning", "No result in the last run."
            ),
        )
    return None


def _summary(result: PublicResult) -> str:
    return f"<p>{html.esc(result.summary)}</p>" if result.summary else ""


def _terms(result: PublicResult, name: str, *, k: int, alt: str) -> str:
    """A forest plot of the terms but the intercept, and the table of all terms."""
    terms = frames.table_frame(result, name, needs=("term", "estimate", "ci_low", "ci_high"))
    if terms is None:
        return ""
    terms = terms.assign(term=terms["term"].map(term_words))
    plotted = terms[(terms["term"] != "Intercept") & ~terms["suppressed"]].dropna(subset=["estimate"])
    figure = plots.coefficients(plotted, x_label="Math score points (95% interval)")
    columns = {c: t for c, t in TERM_COLUMNS.items() if c in terms}
    return figure_html(figure, alt) + html.table(terms, columns=columns, formats=TERM_FORMATS, k=k)


def _statistics(result: PublicResult, name: str, key_column: str) -> dict[str, float]:
    table = frames.table_frame(result, name, needs=(key_column, "value"))
    return {} if table is None else dict(zip(table[key_column], table["value"], strict=True))


def ols_section(results: Results) -> str:
    if not results:
        return ""
    title = "Math score on SES, sex, minority and sector (OLS)"
    failed = _failed(results, OLS, title)
    if failed is not None:
        return failed
    result = results.get(OLS)
    assert result is not None
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
    body += _terms(result, "coefficients", k=results.k, alt="Forest plot of the OLS coefficients")
    return html.section(title, body)


def multilevel_section(results: Results) -> str:
    if not results:
        return ""
    parts = []
    title = "Between and within schools (multilevel null model)"
    null = _failed(results, NULL, title)
    if null is None:
        result = results.get(NULL)
        assert result is not None
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
        null = html.section(title, _summary(result) + html.cards(cards))
    parts.append(null)
    title = "School effects model: SES within and between schools"
    effects = _failed(results, EFFECTS, title)
    if effects is None:
        result = results.get(EFFECTS)
        assert result is not None
        body = _summary(result) + html.block(
            f'<p class="wb-meta">Math score on school mean SES {TIMES} SES relative to the school mean and '
            f"sector {TIMES} SES relative to the school mean, with a random intercept and a random SES slope "
            "per school (REML). Each school's predicted effects are on the Schools dashboard.</p>"
        )
        body += _terms(result, "fixed_effects", k=results.k, alt="Forest plot of the fixed effects")
        variance = frames.table_frame(result, "variance_components", needs=("component", "value"))
        if variance is not None:
            body += html.table(
                variance.assign(component=variance["component"].map(term_words)),
                columns={"component": "Variance component", "value": "Estimate"},
                formats={"value": html.number(3)},
                k=results.k,
            )
        effects = html.section(title, body)
    parts.append(effects)
    return "".join(parts)


def _metrics(result: PublicResult, k: int) -> str:
    metrics = frames.table_frame(result, "metrics", needs=("metric", "model", "baseline"))
    if metrics is None:
        return ""
    columns = {"metric": "Metric", "model": "Model", "model_se": "± SE", "baseline": "Baseline"}
    return html.table(
        metrics.assign(metric=metrics["metric"].map(lambda m: WORDS.get(m, m))),
        columns={c: t for c, t in columns.items() if c in metrics},
        formats={"model": html.number(3), "model_se": html.number(3), "baseline": html.number(3)},
        k=k,
    )


def at_risk_section(results: Results) -> str:
    if not results:
        return ""
    title = "Students at risk of a low math score"
    failed = _failed(results, AT_RISK, title)
    if failed is not None:
        return failed
    result = results.get(AT_RISK)
    assert result is not None
    body = _summary(result) + _metrics(result, results.k)
    figures = []
    calibration = frames.table_frame(result, "calibration", needs=("mean_predicted", "observed_rate", "n"))
    if calibration is not None:
        shown = calibration[~calibration["suppressed"]]
        caption = "Bins of predicted risk with fewer than the minimum group size are left out."
        figures.append(
            figure_html(plots.calibration(shown), "Calibration plot of the at-risk model", caption)
        )
    importances = frames.table_frame(result, "importances", needs=("feature", "importance"))
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
    row = "".join(f'<div style="flex: 1 1 420px">{f}</div>' for f in figures)
    return html.section(title, body + f'<div style="display:flex; flex-wrap:wrap; gap:16px">{row}</div>')


def prediction_section(results: Results) -> str:
    if not results:
        return ""
    title = "Predicting math scores"
    failed = _failed(results, PREDICTION, title)
    if failed is not None:
        return failed
    result = results.get(PREDICTION)
    assert result is not None
    note = "Errors on schools the model was not trained on; the baseline predicts each training fold's mean."
    return html.section(
        title, _summary(result) + _metrics(result, results.k) + f'<p class="wb-meta">{note}</p>'
    )
