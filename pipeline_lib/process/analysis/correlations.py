"""Pearson correlations among the numeric fields, as one Spark aggregation. Each pair uses the
students who have both values (optional fields are often missing), so every pair has its own n
and a 95% confidence interval (Fisher's z). `correlate_pandas` gives the same table from a pandas
frame."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline_lib.process.analysis.base import Z_95
from pipeline_lib.process.analysis.frame import NUMERIC


def correlate(students: DataFrame, variables: Sequence[str] = NUMERIC) -> pd.DataFrame:
    """One row per pair of `variables` (in order): a, b, n (both present), r, ci_low, ci_high;
    r is missing when a variable has no spread among those students."""
    pairs = list(itertools.combinations(variables, 2))
    aggregates = []
    for i, (a, b) in enumerate(pairs):
        x, y = F.col(a).cast("double"), F.col(b).cast("double")
        both = x.isNotNull() & y.isNotNull()
        # Spark's corr skips rows where either value is null: pairwise complete.
        aggregates += [F.count(F.when(both, 1)).alias(f"n{i}"), F.corr(x, y).alias(f"r{i}")]
        # "No spread" decided exactly (min = max), as the pandas path does: a constant like 0.1
        # leaves a rounding residue in the variance (in Spark when split over partitions).
        aggregates += [
            (F.min(F.when(both, x)) < F.max(F.when(both, x))).alias(f"sx{i}"),
            (F.min(F.when(both, y)) < F.max(F.when(both, y))).alias(f"sy{i}"),
        ]
    row = students.agg(*aggregates).first() if pairs else None
    return _table(
        [
            (a, b, int(row[f"n{i}"]), row[f"r{i}"] if row[f"sx{i}"] and row[f"sy{i}"] else None)
            for i, (a, b) in enumerate(pairs)
        ]
    )


def correlate_pandas(students: pd.DataFrame, variables: Sequence[str] = NUMERIC) -> pd.DataFrame:
    """As `correlate`, from a pandas frame."""
    found = []
    for a, b in itertools.combinations(variables, 2):
        x, y = students[a].astype(float), students[b].astype(float)
        both = x.notna() & y.notna()
        n = int(both.sum())
        spread = n > 1 and x[both].min() < x[both].max() and y[both].min() < y[both].max()
        found.append((a, b, n, x[both].corr(y[both]) if spread else None))
    return _table(found)


def _table(found: list[tuple[str, str, int, float | None]]) -> pd.DataFrame:
    rows = []
    for a, b, n, r in found:
        r = None if r is None or math.isnan(r) else float(r)
        low, high = fisher_interval(r, n)
        rows.append({"a": a, "b": b, "n": n, "r": r, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["a", "b", "n", "r", "ci_low", "ci_high"])


def fisher_interval(r: float | None, n: int) -> tuple[float | None, float | None]:
    """The 95% confidence interval of a correlation r from n pairs (None if it has none)."""
    if r is None or n <= 3:
        return None, None
    if abs(r) >= 1:
        return r, r
    z, half = math.atanh(r), Z_95 / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)
