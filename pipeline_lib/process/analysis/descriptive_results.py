"""Results as `ResultDocument`s for `processed`: one per analysis and scope, keyed
`analysis:scope` (`contract.result_keys`), stamped with the run and its input (`Stamp`), with
machine-readable tables. This module holds what every document shares and the Spark results'
documents; `model_results` the models'.

Tables of groups of students name their size column, so `results.suppress` hides groups under
k; model terms that rest on one category of students (a sex, a sector) carry that category's
size for the same reason. Floats are rounded to 12 significant digits. The models' figures
repeat exactly on a rerun (sorted input, exact school means, seeds); Spark's sums repeat
exactly with the same partitioning, and another partitioning can change the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.contract import result_keys as keys
from pipeline_lib.process.analysis import interpret
from pipeline_lib.process.analysis.base import Failure
from pipeline_lib.process.analysis.descriptives import STATS
from pipeline_lib.process.results import ChartSpec, ResultDocument, ResultTable, RunStamp, stamped_document

SIGNIFICANT_DIGITS = 12

TITLES: Mapping[str, str] = {
    keys.DESCRIPTIVES_OVERALL: "Descriptive statistics of all students",
    keys.DESCRIPTIVES_BY_SECTOR: "Descriptive statistics by school sector",
    keys.DESCRIPTIVES_BY_SEX: "Descriptive statistics by sex",
    keys.DESCRIPTIVES_BY_MINORITY: "Descriptive statistics by minority status",
    keys.DESCRIPTIVES_BY_SCHOOL: "Descriptive statistics by school",
    keys.CORRELATIONS: "Correlations among the numeric fields",
    keys.OLS: "Math score on SES, sex, minority and sector (OLS, robust standard errors)",
    keys.MIXEDLM_NULL: "Variance between and within schools (multilevel null model)",
    keys.MIXEDLM_SCHOOL_EFFECTS: "SES within and between schools (multilevel school-effects model)",
    keys.AT_RISK: "Predicting students at risk of a low math score",
    keys.PREDICTION: "Predicting math scores",
}
KEYS = keys.ANALYSIS_KEYS
# The document of each scope of `descriptives.describe` (`overall`, `by_sector`, ...).
DESCRIPTIVES_KEYS: Mapping[str, str] = {
    key.partition(":")[2]: key
    for key in (
        keys.DESCRIPTIVES_OVERALL,
        keys.DESCRIPTIVES_BY_SECTOR,
        keys.DESCRIPTIVES_BY_SEX,
        keys.DESCRIPTIVES_BY_MINORITY,
        keys.DESCRIPTIVES_BY_SCHOOL,
    )
}


@dataclass(frozen=True)
class Stamp(RunStamp):
    """What every analysis document of one run carries, beyond the run and its time."""

    n_input: int
    input_high_water_mark: int
    k_min_group: int
    seed: int
    sample_size: int | None = None  # rows the models used when the input was sampled
    extra: Mapping[str, Any] = field(default_factory=dict)


def cell(value: Any) -> Any:
    """A JSON-safe table cell: Python scalars, None for missing or non-finite numbers."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return None
        return float(f"{number:.{SIGNIFICANT_DIGITS}g}")
    return str(value)


def plain(value: Any) -> Any:
    """`cell` applied through dicts, lists and tuples."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return cell(value)


def table(
    name: str,
    title: str,
    frame: pd.DataFrame,
    *,
    size: str | None = None,
    labels: Sequence[str] = (),
    audience: str = "public",
) -> ResultTable:
    """A `ResultTable` of `frame`; `size` names the column holding each row's student count.
    Minimum and maximum columns are for analysts only: each is one student's value."""
    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return ResultTable(
        name=name,
        title=title,
        columns=[str(c) for c in frame.columns],
        rows=rows,
        group_size_column=size,
        label_columns=list(labels),
        audience=audience,
        analyst_columns=[c for c in ("min", "max") if c in frame.columns],
    )  # type: ignore[arg-type]


def document(
    key: str,
    stamp: Stamp,
    *,
    summary: str,
    tables: list[ResultTable],
    engine: str,
    chart: ChartSpec | None = None,
    sampled: bool = False,
    parameters: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    title: str | None = None,
) -> ResultDocument:
    """A result of `key`, titled `title` or as the catalog titles the key."""
    return stamped_document(
        key,
        stamp,
        title=title or TITLES[key],
        n_input=stamp.n_input,
        summary=summary,
        tables=tables,
        chart=chart,
        input_high_water_mark=stamp.input_high_water_mark,
        status="ok",
        engine=engine,
        sample_size=stamp.sample_size if sampled else None,
        parameters=plain({"k_min_group": stamp.k_min_group, **(parameters or {})}),
        warnings=list(warnings),
    )


def failure_document(
    key: str,
    stamp: Stamp,
    failed: Failure,
    *,
    engine: str,
    sampled: bool = False,
    title: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> ResultDocument:
    """A document that says clearly that, and why, an analysis has no result."""
    tables = []
    if failed.attempts:
        attempts = pd.DataFrame(
            [(a.optimizer, a.converged, a.message) for a in failed.attempts],
            columns=["optimizer", "usable", "message"],
        )
        tables.append(table("attempts", "Fits tried", attempts, audience="analyst"))
    doc = document(
        key,
        stamp,
        summary=interpret.failure(title or TITLES[key], failed),
        tables=tables,
        engine=engine,
        sampled=sampled,
        warnings=failed.warnings,
        title=title,
        parameters=parameters,
    )
    return doc.model_copy(update={"status": "failed", "error": failed.reason})


# -- descriptives ------------------------------------------------------------------------------


def descriptives_documents(
    tables: Mapping[str, pd.DataFrame],
    stamp: Stamp,
    schools: pd.DataFrame | None = None,
    *,
    engine: str = "spark",
) -> list[ResultDocument]:
    """One document per scope of `descriptives.describe`, each with one long table (a row per
    group and field); grouped scopes add a small chart table of the mean math score, and the
    per-school table names each school."""
    docs = []
    stats = [*STATS, "below_k"]
    for scope, frame in tables.items():
        by = [c for c in frame.columns if c not in ("variable", *stats)]
        if by == ["school_id"] and schools is not None:
            frame = frame.merge(schools[["school_id", "name", "sector"]], on="school_id", how="left")
        labels = [c for c in frame.columns if c not in ("variable", *stats)]
        statistics = table(
            "statistics",
            "Per group and field",
            frame[[*labels, "variable", *stats]],
            size="n",
            labels=[*labels, "variable"],
        )
        result_tables, chart = [statistics], None
        if scope == "overall":
            summary = interpret.descriptives_overall(frame)
            chart = ChartSpec(table="statistics", x="variable", y="n", title="Students with a value")
        else:
            summary = interpret.descriptives_grouped(frame, by[0], stamp.k_min_group)
            if scope != "by_school":
                means = frame[frame["variable"] == "math_score"][[*labels, "n", "mean"]]
                result_tables.append(
                    table("math_score_means", "Mean math score", means, size="n", labels=labels)
                )
                chart = ChartSpec(table="math_score_means", x=by[0], y="mean", title="Mean math score")
        docs.append(
            document(
                DESCRIPTIVES_KEYS[scope],
                stamp,
                summary=summary,
                tables=result_tables,
                engine=engine,
                chart=chart,
            )
        )
    return docs


def correlations_document(pairs: pd.DataFrame, stamp: Stamp, *, engine: str = "spark") -> ResultDocument:
    frame = pairs.assign(pair=pairs["a"] + " and " + pairs["b"])[
        ["pair", "a", "b", "n", "r", "ci_low", "ci_high"]
    ]
    return document(
        keys.CORRELATIONS,
        stamp,
        summary=interpret.correlations(pairs),
        engine=engine,
        tables=[
            table(
                "pairs",
                "Pearson correlations (pairwise complete)",
                frame,
                size="n",
                labels=["pair", "a", "b"],
            )
        ],
        chart=ChartSpec(table="pairs", x="pair", y="r", title="Correlation"),
        parameters={"method": "pearson"},
    )
