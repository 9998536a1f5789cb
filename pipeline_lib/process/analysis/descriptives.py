"""Descriptive statistics of the numeric fields, overall and by sector, sex, minority and
school: n (students with a value), mean, sd, min, quartiles and max per group and field.

Counts, means, SDs and extremes are Spark aggregations, one pass over the data for every
grouping (grouping sets). Quartiles are exact (linear interpolation between order statistics,
as numpy's default), so a rerun gives the same figures: by Spark's `percentile` when the data
is only in Spark, or by pandas from `in_memory` when the caller already holds every row on the
driver (the models' frame, up to `max_model_rows`). Spark's exact percentile keeps every value
in a hash map and cost 20-40 s per million rows and five fields on this 2-core machine, pandas
under a second. `below_k` marks groups of fewer than `k` students with a value; public views
suppress them. `describe_pandas` gives the same tables from a pandas frame of every student (the
pandas engine).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline_lib.process.analysis.frame import NUMERIC

# Document scope -> the columns that make a group.
GROUPINGS: Mapping[str, tuple[str, ...]] = {
    "overall": (),
    "by_sector": ("sector",),
    "by_sex": ("sex",),
    "by_minority": ("minority",),
    "by_school": ("school_id",),
}
STATS = ("n", "mean", "sd", "min", "q1", "median", "q3", "max")
QUARTILES = (0.25, 0.5, 0.75)
# pandas' aggregation -> the column `describe` gives it (Spark's count, avg, stddev_samp, min, max).
_PANDAS_STATS = {"count": "n", "mean": "mean", "std": "sd", "min": "min", "max": "max"}


def describe(
    students: DataFrame,
    k: int,
    *,
    groupings: Mapping[str, tuple[str, ...]] = GROUPINGS,
    variables: Sequence[str] = NUMERIC,
    in_memory: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Per scope of `groupings`: a table with the group columns, `variable`, the `STATS` and
    `below_k`, one row per group and field, ordered by group then field. `in_memory`, if given,
    must hold exactly the rows of `students` (it supplies the quartiles)."""
    group_columns = list(dict.fromkeys(c for cols in groupings.values() for c in cols))
    aggregates = [F.grouping_id().alias("__gid")]
    for v in variables:
        value = F.col(v).cast("double")
        aggregates += [
            F.count(value).alias(f"{v}__n"),
            F.avg(value).alias(f"{v}__mean"),
            F.stddev_samp(value).alias(f"{v}__sd"),
            F.min(value).alias(f"{v}__min"),
            F.max(value).alias(f"{v}__max"),
        ]
        if in_memory is None:
            aggregates.append(F.percentile(value, F.array(*[F.lit(q) for q in QUARTILES])).alias(f"{v}__q"))
    sets = [list(cols) for cols in groupings.values()]
    wide = students.groupingSets(sets, *group_columns).agg(*aggregates).toPandas()
    tables = {}
    for scope, cols in groupings.items():
        part = wide[wide["__gid"] == _grouping_id(cols, group_columns)].reset_index(drop=True)
        if in_memory is not None:
            part = _with_quartiles(part, in_memory, cols, variables)
        tables[scope] = _long(part, cols, variables, k)
    return tables


def describe_pandas(
    students: pd.DataFrame,
    k: int,
    *,
    groupings: Mapping[str, tuple[str, ...]] = GROUPINGS,
    variables: Sequence[str] = NUMERIC,
) -> dict[str, pd.DataFrame]:
    """As `describe`, from a pandas frame holding every student."""
    values = students[list(variables)].astype(float)
    tables = {}
    for scope, cols in groupings.items():
        if cols:
            labels = [students[c].astype(object).rename(c) for c in cols]
            grouped = values.groupby(labels, dropna=False, sort=False)
            stats = {name: getattr(grouped, name)() for name in _PANDAS_STATS}
            part = stats["count"].index.to_frame(index=False)
            for c in cols:  # a missing label is None, as Spark gives it
                part[c] = part[c].astype(object).where(part[c].notna(), None)
        else:
            stats = {name: getattr(values, name)().to_frame().T for name in _PANDAS_STATS}
            part = pd.DataFrame(index=range(1))
        for v in variables:
            for name, stat in _PANDAS_STATS.items():
                part[f"{v}__{stat}"] = stats[name][v].to_numpy()
        part = _with_quartiles(part, students, cols, variables)
        tables[scope] = _long(part, cols, variables, k)
    return tables


def quartiles(frame: pd.DataFrame, cols: tuple[str, ...], variables: Sequence[str]) -> pd.DataFrame:
    """Exact quartiles per group of `cols` (missing values skipped): index the group, columns
    `<variable>__q` holding [q1, median, q3]."""
    if cols:
        groups = frame.groupby(list(cols), dropna=False, sort=False, observed=True)
        grouped = groups[list(variables)].quantile(list(QUARTILES))
        wide = grouped.unstack(level=-1)
    else:
        wide = frame[list(variables)].quantile(list(QUARTILES)).unstack().to_frame().T
    return pd.DataFrame(
        {f"{v}__q": [list(row) for row in wide[v].to_numpy()] for v in variables}, index=wide.index
    )


def _with_quartiles(
    part: pd.DataFrame, frame: pd.DataFrame, cols: tuple[str, ...], variables: Sequence[str]
) -> pd.DataFrame:
    found = quartiles(frame, cols, variables)
    keys = [tuple(_key(row[c]) for c in cols) for _, row in part.iterrows()]
    lookup = {
        tuple(_key(x) for x in (k if isinstance(k, tuple) else (k,))): i for i, k in enumerate(found.index)
    }
    if not cols:
        lookup = {(): 0}
    for v in variables:
        column = found[f"{v}__q"].to_list()
        part[f"{v}__q"] = [column[lookup[key]] if key in lookup else None for key in keys]
    return part


def _key(value: object) -> object:
    """Group labels as plain, comparable values (NaN and None alike, numpy bools as bools)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return bool(value) if isinstance(value, np.bool_) else value


def _grouping_id(in_set: tuple[str, ...], group_columns: list[str]) -> int:
    """Spark's grouping_id(): bit i (from the left) set when column i is not in the set."""
    bits = [0 if c in in_set else 1 for c in group_columns]
    return int("".join(map(str, bits)) or "0", 2)


def _long(wide: pd.DataFrame, cols: tuple[str, ...], variables: Sequence[str], k: int) -> pd.DataFrame:
    parts = []
    for v in variables:
        quartile_lists = wide[f"{v}__q"].map(lambda q: list(q) if q is not None else [None] * 3)
        part = wide[list(cols)].copy()
        part["variable"] = v
        part["n"] = wide[f"{v}__n"].astype("int64")
        for stat in ("mean", "sd", "min"):
            part[stat] = wide[f"{v}__{stat}"].astype(float)
        for i, name in enumerate(("q1", "median", "q3")):
            part[name] = quartile_lists.map(lambda q, i=i: q[i]).astype(float)
        part["max"] = wide[f"{v}__max"].astype(float)
        # Values all equal have no spread, exactly: the engines' SD of a constant like 0.1 is a
        # rounding residue (1.5e-17 in pandas, 0 or not in Spark), which the documents would keep.
        part["sd"] = part["sd"].mask(part["sd"].notna() & (part["min"] == part["max"]), 0.0)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table["below_k"] = table["n"] < k
    order = {v: i for i, v in enumerate(variables)}
    table = table.assign(__order=table["variable"].map(order))
    return table.sort_values([*cols, "__order"], na_position="last", ignore_index=True).drop(
        columns="__order"
    )
