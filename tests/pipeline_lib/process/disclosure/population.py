"""Small synthetic populations and their public documents, built by the real document builders
(`descriptive_results`, `distributions`): quartiles and moments computed by pandas in the shape
`descriptives.describe` gives Spark's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline_lib.process.analysis import descriptive_results, descriptives, distributions
from pipeline_lib.process.analysis.frame import NUMERIC
from pipeline_lib.process.results import ResultDocument

SECTORS = ("public", "catholic", "private")
WHEN = dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC)


def students(sizes: Sequence[int], seed: int = 1) -> pd.DataFrame:
    """One row per student: school `i` has `sizes[i]` students and sector `SECTORS[i % 3]`."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(len(sizes)), sizes)
    n = len(school)
    frame = pd.DataFrame(
        {
            "submission_id": [f"s{seed}-{i:06d}" for i in range(n)],
            "school_id": [f"S{i:04d}" for i in school],
            "sector": [SECTORS[i % 3] for i in school],
            "sex": rng.choice(np.array(["female", "male", "other"], dtype=object), n, p=[0.48, 0.48, 0.04]),
            "minority": rng.random(n) < 0.3,
            "ses": np.round(np.clip(rng.normal(0, 1, n), -5, 5), 2),
            "math_score": np.round(np.clip(rng.normal(55, 15, n), -10, 100), 1),
            "age": rng.integers(12, 19, n).astype(float),
            "study_hours_week": np.round(rng.gamma(2, 3, n), 1),
            "absences": rng.integers(0, 20, n).astype(float),
        }
    )
    for optional in ("age", "study_hours_week", "absences"):
        frame.loc[rng.random(n) < 0.1, optional] = np.nan
    return frame


def schools(frame: pd.DataFrame) -> pd.DataFrame:
    ids = sorted(frame["school_id"].unique())
    sector = frame.groupby("school_id")["sector"].first()
    return pd.DataFrame(
        {"school_id": ids, "name": [f"School {i}" for i in ids], "sector": sector[ids].to_numpy()}
    )


def describe(frame: pd.DataFrame, k: int) -> dict[str, pd.DataFrame]:
    """`descriptives.describe` without Spark: the same long tables."""
    tables = {}
    for scope, cols in descriptives.GROUPINGS.items():
        groups = frame.groupby(list(cols), sort=True, observed=True) if cols else None
        parts = {}
        for v in NUMERIC:
            column = groups[v] if groups is not None else frame[v]
            stats = {"n": column.count(), "mean": column.mean(), "sd": column.std(), "min": column.min()}
            stats["max"] = column.max()
            parts.update({f"{v}__{s}": value for s, value in stats.items()})
        if groups is not None:
            wide = pd.DataFrame(parts).reset_index()
        else:
            wide = pd.DataFrame({name: [value] for name, value in parts.items()})
        quartiles = descriptives.quartiles(frame, cols, NUMERIC).reset_index(drop=True)
        for v in NUMERIC:
            wide[f"{v}__q"] = quartiles[f"{v}__q"]
        tables[scope] = descriptives._long(wide, cols, NUMERIC, k)
    return tables


def documents(frame: pd.DataFrame, k: int = 5) -> list[ResultDocument]:
    """The descriptives and distribution documents of `frame`, as a process run writes them."""
    stamp = descriptive_results.Stamp(
        run_id="run",
        computed_at=WHEN,
        n_input=len(frame),
        input_high_water_mark=len(frame),
        k_min_group=k,
        seed=1,
    )
    docs = descriptive_results.descriptives_documents(describe(frame, k), stamp, schools(frame))
    docs += distributions.distribution_documents_pandas(frame, run_id="run", computed_at=WHEN)
    return docs


def protected(frame: pd.DataFrame, k: int = 5, **options: object) -> tuple[list[ResultDocument], object]:
    """The documents of `frame` (every bin listed) and their `protect` result."""
    from pipeline_lib.process.disclosure import protect
    from pipeline_lib.process.disclosure.bins import with_empty_bins

    docs = [with_empty_bins(d) for d in documents(frame, k)]
    return docs, protect(docs, k=k, **options)  # type: ignore[arg-type]


def public_rows(docs: list[ResultDocument], protection: object, key: str, table: str) -> list[dict]:
    """What anyone sees of one table: hidden rows keep their labels only, quantiles of rows in
    `quantile_rows` are blanked (what the wiring does with a `Protection`)."""
    from pipeline_lib.process.disclosure import RowRef

    reasons = protection.row_reasons()  # type: ignore[attr-defined]
    doc = next(d for d in docs if d.key == key)
    t = next(t for t in doc.tables if t.name == table)
    rows = []
    for i, row in enumerate(t.rows):
        ref = RowRef(key, table, i)
        values = dict(zip(t.columns, row, strict=True))
        if ref in reasons:
            values = {c: (v if c in t.label_columns else None) for c, v in values.items()}
        if ref in protection.quantile_rows:  # type: ignore[attr-defined]
            values.update({c: None for c in ("q1", "median", "q3") if c in values})
        for c in t.analyst_columns:
            values.pop(c, None)
        rows.append(values)
    return rows
