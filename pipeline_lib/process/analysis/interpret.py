"""One sentence of interpretation per result, generated from its numbers: what a reader of the
report or the results page should take away. Pure functions of the result objects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline_lib.process.analysis.base import Failure
from pipeline_lib.process.analysis.classification import ClassificationResult
from pipeline_lib.process.analysis.multilevel import NullModel, SchoolEffectsModel
from pipeline_lib.process.analysis.ols import DEFAULT_FORMULA, OlsResult
from pipeline_lib.process.analysis.regression import RegressionResult

GROUP_WORDS = {"sector": "sector", "sex": "sex", "minority": "minority status", "school_id": "school"}


def ordinal(number: float) -> str:
    n = round(number)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _higher(value: float) -> str:
    return "higher" if value >= 0 else "lower"


def descriptives_overall(table: pd.DataFrame, outcome: str = "math_score") -> str:
    row = table[table["variable"] == outcome]
    if row.empty or int(row["n"].iloc[0]) == 0:
        return f"No student has a {outcome.replace('_', ' ')}."
    r = row.iloc[0]
    return (
        f"Across {int(r['n']):,} students the mean {outcome.replace('_', ' ')} is {r['mean']:.1f} "
        f"(SD {_or_dash(r['sd'])}); the middle half scored between {r['q1']:.1f} and {r['q3']:.1f}."
    )


def descriptives_grouped(table: pd.DataFrame, by: str, k: int, outcome: str = "math_score") -> str:
    rows = table[table["variable"] == outcome]
    shown = rows[~rows["below_k"]]
    hidden = len(rows) - len(shown)
    word = GROUP_WORDS.get(by, by)
    note = (
        f"; {hidden} {word} group{'s' if hidden != 1 else ''} of fewer than {k} students stay hidden"
        if hidden
        else ""
    )
    if shown.empty:
        return f"No {word} group has {k} or more students with a {outcome.replace('_', ' ')}{note}."
    if len(shown) == 1:
        r = shown.iloc[0]
        name = outcome.replace("_", " ")
        return f"Only {_label(r[by])} has {k} or more students: mean {name} {r['mean']:.1f}{note}."
    low, high = shown.loc[shown["mean"].idxmin()], shown.loc[shown["mean"].idxmax()]
    return (
        f"Mean {outcome.replace('_', ' ')} by {word} ranges from {low['mean']:.1f} ({_label(low[by])}) to "
        f"{high['mean']:.1f} ({_label(high[by])}) across {len(shown):,} groups{note}."
    )


def correlations(pairs: pd.DataFrame) -> str:
    known = pairs.dropna(subset=["r"])
    if known.empty:
        return "No pair of numeric fields has enough values with spread to correlate."
    top = known.loc[known["r"].abs().idxmax()]
    notable = int((known["r"].abs() >= 0.1).sum())
    return (
        f"The strongest correlation is between {top['a']} and {top['b']} (r = {top['r']:.2f}, "
        f"n = {int(top['n']):,}); {notable} of {len(known)} pairs have |r| of 0.1 or more."
    )


def ols(result: OlsResult) -> str:
    fit = (
        f"the model explains {result.r_squared:.0%} of the variance "
        f"(R² = {result.r_squared:.3f}, n = {result.n:,})."
    )
    terms = result.coefficients.set_index("term").drop(index="Intercept", errors="ignore")
    if result.formula != DEFAULT_FORMULA:  # an analyst's formula: its first term, in general words
        if terms.empty:
            return fit[0].upper() + fit[1:]
        outcome = result.formula.split("~")[0].strip()
        name, first = str(terms.index[0]), terms.iloc[0]
        held = "With the other terms held constant, " if len(terms) > 1 else ""
        change = "being in " + name if "[" in name else f"one unit more {name}"
        return (
            f"{held}{change} goes with {outcome} {abs(first['estimate']):.2f} {_higher(first['estimate'])} "
            f"(95% CI {first['ci_low']:.2f} to {first['ci_high']:.2f}, {result.cov_type} SE); {fit}"
        )
    ses = terms.loc["ses"]
    return (
        f"With sex, minority status and sector held constant, one point more SES goes with "
        f"{abs(ses['estimate']):.2f} points {_higher(ses['estimate'])} math scores "
        f"(95% CI {ses['ci_low']:.2f} to {ses['ci_high']:.2f}, robust SE); {fit}"
    )


def null_model(model: NullModel) -> str:
    return (
        f"{model.icc:.0%} of the variance in math scores lies between schools (ICC = {model.icc:.3f}); "
        f"school means vary around {model.grand_mean:.1f} with SD {math.sqrt(model.between_variance):.1f}, "
        f"students within a school with SD {math.sqrt(model.within_variance):.1f} "
        f"({model.n_students:,} students in {model.n_schools:,} schools)."
    )


def school_effects(model: SchoolEffectsModel, reference_sector: str) -> str:
    fixed = model.fixed.set_index("term")
    if "cses" not in fixed.index or "mean_ses" not in fixed.index:  # an analyst's formula without them
        slope = model.random.split("|")[0].split("+")[-1].strip()
        sd = math.sqrt(max(model.slope_variance, 0.0))
        return (
            f"Fixed effects of {model.formula} with a random intercept and {slope} slope by school; "
            f"the {slope} slope varies between schools with SD {sd:.2f} "
            f"({model.n_students:,} students in {model.n_schools:,} schools)."
        )
    within, between = fixed.loc["cses"], fixed.loc["mean_ses"]
    return (
        f"In a {reference_sector} school, one point more SES than the school's mean goes with "
        f"{abs(within['estimate']):.2f} points {_higher(within['estimate'])} math scores{_unclear(within)}, "
        f"and one point more school mean SES with {abs(between['estimate']):.2f} points "
        f"{_higher(between['estimate'])}{_unclear(between)}; the SES slope varies between schools with "
        f"SD {math.sqrt(max(model.slope_variance, 0.0)):.2f}."
    )


def classification(result: ClassificationResult) -> str:
    auc, auc_se = result.metric("auc")
    accuracy, _ = result.metric("balanced_accuracy")
    verdict = "better than" if result.beats_baseline else "not reliably better than"
    top = result.importances.dropna(subset=["importance"])
    lead = (
        f"; {top.iloc[0]['feature']} matters most" if not top.empty and top.iloc[0]["importance"] > 0 else ""
    )
    return (
        f"Flagging math scores below {result.cut:.1f} (the {ordinal(result.cut_quantile * 100)} percentile), "
        f"the model reaches ROC AUC {auc:.2f} ± {_or_dash(auc_se)} and balanced accuracy {accuracy:.2f} on "
        f"schools it was not trained on ({len(result.folds)} folds), {verdict} the majority-class baseline "
        f"(AUC 0.50, balanced accuracy 0.50){lead}."
    )


def regression(result: RegressionResult) -> str:
    skill, _ = result.skill
    verdict = "a reliable improvement" if result.beats_baseline else "no reliable improvement"
    return (
        f"On schools it was not trained on, the model predicts math scores with RMSE {result.rmse:.2f} "
        f"against {result.baseline_rmse:.2f} for the mean-only baseline ({skill:.0%} lower; MAE "
        f"{result.mae:.2f} vs {result.baseline_mae:.2f}): {verdict}."
    )


def failure(title: str, failed: Failure) -> str:
    return f"{title}: not computed, because {failed.reason}."


def _unclear(row: pd.Series) -> str:
    """A note when the 95% interval includes zero."""
    return " (not distinguishable from zero)" if row["ci_low"] <= 0 <= row["ci_high"] else ""


def _label(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "minority" if value else "not minority"
    return "(missing)" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _or_dash(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"
