"""Distributions for the Overview and Schools dashboards, as result documents for `processed`.

Histograms of `math_score` and `ses` in fixed bins (from the data contract's ranges, so every run
and every dashboard bins alike), the SES-math relation by sector (mean score per SES bin and the
least-squares line of each sector and of everyone) and the students per school. Counts come from
Spark aggregations, so they scale with the data; `*_pandas` twins give the same tables for small
frames and tests. Every table keeps its group size in `n`: `results.suppress` blanks bins, sectors
and schools of fewer than k students. Bins without students are left out of the tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline_lib.contract import result_keys as keys
from pipeline_lib.contract.fields import FIELDS_BY_NAME
from pipeline_lib.process.analysis.descriptive_results import table
from pipeline_lib.process.results import ChartSpec, ResultDocument, ResultTable, RunStamp, stamped_document

ALL = "all"  # the sector label of the line fitted to every student


@dataclass(frozen=True)
class Bins:
    """Equal-width bins over a field's allowed range; the last bin includes the upper end."""

    variable: str
    width: float
    lower: float
    upper: float

    @classmethod
    def over(cls, variable: str, width: float) -> Bins:
        """Bins of `width` over the range the data contract allows `variable`."""
        field = FIELDS_BY_NAME[variable]
        return cls(variable, width, float(field.minimum), float(field.maximum))  # type: ignore[arg-type]

    @property
    def count(self) -> int:
        return round((self.upper - self.lower) / self.width)

    def edges(self, index: int) -> tuple[float, float]:
        return self.lower + index * self.width, self.lower + (index + 1) * self.width

    def label(self, index: int) -> str:
        low, high = self.edges(index)
        return f"{low:g} to {high:g}"


# Widths chosen so a histogram has about 20 bars: 5 score points, half an SES point.
HISTOGRAM_BINS: Mapping[str, Bins] = {
    "math_score": Bins.over("math_score", 5.0),
    "ses": Bins.over("ses", 0.5),
}
RELATION_BINS = HISTOGRAM_BINS["ses"]


# -- Spark aggregations ---------------------------------------------------------------------------


def _bin_column(column: str, bins: Bins) -> Column:
    # Edges are multiples of the width, exact in binary floating point: the same on every engine.
    index = F.floor((F.col(column).cast("double") - F.lit(bins.lower)) / F.lit(bins.width))
    return F.least(index, F.lit(bins.count - 1)).cast("int")


def _in_range(column: str, bins: Bins) -> Column:
    value = F.col(column).cast("double")
    return value.isNotNull() & value.between(bins.lower, bins.upper)


def histogram_counts(students: DataFrame, bins: Mapping[str, Bins] = HISTOGRAM_BINS) -> pd.DataFrame:
    """variable, bin, n: students per non-empty bin of each variable (one pass over the data)."""
    pairs = [
        F.when(_in_range(v, b), F.struct(F.lit(v).alias("variable"), _bin_column(v, b).alias("bin")))
        for v, b in bins.items()
    ]
    exploded = students.select(F.explode(F.array_compact(F.array(*pairs))).alias("p"))
    counts = exploded.groupBy("p.variable", "p.bin").agg(F.count(F.lit(1)).alias("n")).toPandas()
    return _sorted_counts(counts, bins)


def relation_tables(students: DataFrame, bins: Bins = RELATION_BINS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(binned, lines) of `math_score` on `ses`: per sector and SES bin the students, their mean SES
    and mean score; per sector and for everyone (`ALL`) the least-squares line."""
    both = students.where(_in_range("ses", bins) & F.col("math_score").isNotNull())
    x, y = F.col("ses").cast("double"), F.col("math_score").cast("double")
    binned = (
        both.where(F.col("sector").isNotNull())
        .groupBy("sector", _bin_column("ses", bins).alias("bin"))
        .agg(F.count(F.lit(1)).alias("n"), F.avg(x).alias("mean_ses"), F.avg(y).alias("mean_math"))
        .toPandas()
    )
    # rollup: one row per sector and one for everyone (sector null, grouping id 1), in one pass.
    moments = (
        both.rollup("sector")
        .agg(
            F.grouping_id().alias("gid"),
            F.count(F.lit(1)).alias("n"),
            F.avg(x).alias("mean_x"),
            F.avg(y).alias("mean_y"),
            F.var_samp(x).alias("var_x"),
            F.var_samp(y).alias("var_y"),
            F.covar_samp(x, y).alias("cov_xy"),
            (F.min(x) < F.max(x)).alias("spread_x"),
            (F.min(y) < F.max(y)).alias("spread_y"),
        )
        .toPandas()
    )
    moments = moments[(moments["gid"] == 1) | moments["sector"].notna()]
    moments.loc[moments["gid"] == 1, "sector"] = ALL
    return _binned_table(binned, bins), _lines_table(moments.drop(columns="gid"))


def school_sizes(students: DataFrame, schools: DataFrame | None = None) -> pd.DataFrame:
    """school_id, (name,) sector, n: students per school, named when `students` has the school's
    `name` or `schools` (reference data) is given."""
    named = "name" in students.columns
    counts = students.groupBy("school_id", *(["name"] if named else []), "sector").agg(
        F.count(F.lit(1)).alias("n")
    )
    if schools is not None and not named:
        counts = counts.join(F.broadcast(schools.select("school_id", "name")), "school_id", "left")
    return _school_table(counts.toPandas())


# -- the pandas twins -----------------------------------------------------------------------------


def _bin_index(values: pd.Series, bins: Bins) -> np.ndarray:
    index = np.floor((values.to_numpy(dtype=float) - bins.lower) / bins.width)
    return np.minimum(index, bins.count - 1).astype("int64")


def _within(values: pd.Series, bins: Bins) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    return numbers.notna() & numbers.between(bins.lower, bins.upper)


def histogram_counts_pandas(
    students: pd.DataFrame, bins: Mapping[str, Bins] = HISTOGRAM_BINS
) -> pd.DataFrame:
    parts = []
    for variable, b in bins.items():
        values = students.loc[_within(students[variable], b), variable].astype(float)
        counts = pd.Series(_bin_index(values, b)).value_counts()
        parts.append(pd.DataFrame({"variable": variable, "bin": counts.index, "n": counts.to_numpy()}))
    return _sorted_counts(pd.concat(parts, ignore_index=True), bins)


def relation_tables_pandas(
    students: pd.DataFrame, bins: Bins = RELATION_BINS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    both = students.loc[_within(students["ses"], bins) & students["math_score"].notna()]
    frame = pd.DataFrame(
        {
            "sector": both["sector"],
            "bin": _bin_index(both["ses"], bins),
            "x": both["ses"].astype(float),
            "y": both["math_score"].astype(float),
        }
    )
    binned = (
        frame.dropna(subset=["sector"])
        .groupby(["sector", "bin"], observed=True)
        .agg(n=("y", "size"), mean_ses=("x", "mean"), mean_math=("y", "mean"))
        .reset_index()
    )
    groups = [(str(s), g) for s, g in frame.dropna(subset=["sector"]).groupby("sector", observed=True)]
    rows = [_moments(name, g) for name, g in [*groups, (ALL, frame)] if len(g)]
    return _binned_table(binned, bins), _lines_table(pd.DataFrame(rows))


def _moments(sector: str, g: pd.DataFrame) -> dict[str, object]:
    many = len(g) > 1
    return {
        "sector": sector,
        "n": len(g),
        "mean_x": g["x"].mean(),
        "mean_y": g["y"].mean(),
        "var_x": g["x"].var() if many else None,
        "var_y": g["y"].var() if many else None,
        "cov_xy": g["x"].cov(g["y"]) if many else None,
        "spread_x": bool(g["x"].min() < g["x"].max()),
        "spread_y": bool(g["y"].min() < g["y"].max()),
    }


def school_sizes_pandas(students: pd.DataFrame, schools: pd.DataFrame | None = None) -> pd.DataFrame:
    named = "name" in students
    keys = ["school_id", *(["name"] if named else []), "sector"]
    counts = students.groupby(keys, dropna=False).size().rename("n").reset_index()
    if schools is not None and not named:
        counts = counts.merge(schools[["school_id", "name"]], on="school_id", how="left")
    return _school_table(counts)


# -- tables shared by both engines ----------------------------------------------------------------


def _sorted_counts(counts: pd.DataFrame, bins: Mapping[str, Bins]) -> pd.DataFrame:
    order = {v: i for i, v in enumerate(bins)}
    counts = counts.astype({"bin": "int64", "n": "int64"})
    counts = counts.assign(__order=counts["variable"].map(order))
    return counts.sort_values(["__order", "bin"], ignore_index=True)[["variable", "bin", "n"]]


def _binned_table(binned: pd.DataFrame, bins: Bins) -> pd.DataFrame:
    binned = binned.astype({"bin": "int64", "n": "int64"})
    binned["ses_lower"] = bins.lower + binned["bin"] * bins.width
    binned["ses_upper"] = binned["ses_lower"] + bins.width
    columns = ["sector", "bin", "ses_lower", "ses_upper", "n", "mean_ses", "mean_math"]
    return binned.sort_values(["sector", "bin"], ignore_index=True)[columns]


def _lines_table(moments: pd.DataFrame) -> pd.DataFrame:
    """intercept, slope (with its standard error) and r of each group from its moments; none of
    them when SES has no spread (a vertical cloud has no line)."""
    rows = []
    for m in moments.to_dict("records"):
        n, var_x, var_y, cov = int(m["n"]), m["var_x"], m["var_y"], m["cov_xy"]
        # "No spread" decided exactly (min = max): equal values like 0.1 leave a rounding residue
        # in a variance, different in each engine (and in Spark, in each partitioning).
        if not m["spread_y"]:
            var_y = 0.0
        line = {
            "sector": m["sector"],
            "n": n,
            "mean_ses": m["mean_x"],
            "mean_math": m["mean_y"],
            "intercept": None,
            "slope": None,
            "slope_se": None,
            "r": None,
        }
        if n > 1 and m["spread_x"] and var_x is not None and not pd.isna(var_x) and var_x > 0:
            slope = cov / var_x
            line["slope"], line["intercept"] = slope, m["mean_y"] - slope * m["mean_x"]
            if var_y > 0:
                line["r"] = cov / np.sqrt(var_x * var_y)
            if n > 2:
                residual = max((n - 1) * (var_y - cov * cov / var_x), 0.0) / (n - 2)
                line["slope_se"] = float(np.sqrt(residual / ((n - 1) * var_x)))
        rows.append(line)
    table = pd.DataFrame(
        rows, columns=["sector", "n", "mean_ses", "mean_math", "intercept", "slope", "slope_se", "r"]
    )
    # Sectors in alphabetical order, everyone last.
    last = table.assign(__all=table["sector"] == ALL)
    return last.sort_values(["__all", "sector"], ignore_index=True).drop(columns="__all")


def _school_table(counts: pd.DataFrame) -> pd.DataFrame:
    columns = ["school_id", *(["name"] if "name" in counts else []), "sector", "n"]
    counts = counts.astype({"n": "int64"})
    return counts.sort_values("school_id", ignore_index=True)[columns]


# -- documents ------------------------------------------------------------------------------------


def _table(name: str, title: str, frame: pd.DataFrame, labels: list[str]) -> ResultTable:
    """Built as every result table is (`descriptive_results.table`: JSON-safe cells, 12 significant
    digits), with each row's student count in `n`."""
    return table(name, title, frame, size="n", labels=labels)


def histogram_documents(
    counts: pd.DataFrame, stamp: RunStamp, *, bins: Mapping[str, Bins] = HISTOGRAM_BINS
) -> list[ResultDocument]:
    """One `distribution:<variable>` document per variable of `counts` (from `histogram_counts`)."""
    documents = []
    for variable, b in bins.items():
        rows = counts[counts["variable"] == variable]
        table = pd.DataFrame(
            {
                "bin": [b.label(i) for i in rows["bin"]],
                "lower": [b.edges(i)[0] for i in rows["bin"]],
                "upper": [b.edges(i)[1] for i in rows["bin"]],
                "n": rows["n"].to_numpy(),
            }
        )
        total = int(rows["n"].sum())
        label = FIELDS_BY_NAME[variable].label
        documents.append(
            stamped_document(
                keys.distribution(variable),
                stamp,
                title=f"Distribution of {label.lower()}",
                n_input=total,
                summary=(
                    f"{total:,} students in bins of {b.width:g} from {b.lower:g} to {b.upper:g}; "
                    f"bins with no student are left out."
                ),
                tables=[
                    _table(
                        "histogram", f"Students per bin of {label.lower()}", table, ["bin", "lower", "upper"]
                    )
                ],
                chart=ChartSpec(table="histogram", x="bin", y="n", title=f"Students by {label.lower()}"),
            )
        )
    return documents


def relation_document(binned: pd.DataFrame, lines: pd.DataFrame, stamp: RunStamp) -> ResultDocument:
    """`relation:ses_math` from `relation_tables`: the line of each sector (a sector under k
    students is suppressed whole) and the mean score of each sector's SES bins."""
    everyone = lines[lines["sector"] == ALL]
    n = int(everyone["n"].iloc[0]) if len(everyone) else 0
    summary = ""
    if len(everyone) and not pd.isna(everyone["slope"].iloc[0]):
        summary = (
            f"Across {n:,} students, one more SES point goes with "
            f"{everyone['slope'].iloc[0]:+.1f} math points on average."
        )
    return stamped_document(
        keys.SES_MATH_RELATION,
        stamp,
        scope="by_sector",
        title="Socio-economic status and math score, by sector",
        n_input=n,
        summary=summary,
        tables=[
            _table("lines", "Least-squares line of math score on SES", lines, ["sector"]),
            _table(
                "binned", "Mean math score per SES bin", binned, ["sector", "bin", "ses_lower", "ses_upper"]
            ),
        ],
        chart=ChartSpec(table="lines", x="sector", y="slope", title="Math points per SES point"),
    )


def schools_document(sizes: pd.DataFrame, stamp: RunStamp) -> ResultDocument:
    """`distribution:schools` from `school_sizes`: each school's sector (and name) with its
    students; a school of fewer than k students keeps its labels but not its count."""
    labels = [c for c in ("school_id", "name", "sector") if c in sizes]
    total = int(sizes["n"].sum())
    return stamped_document(
        keys.SCHOOL_DISTRIBUTION,
        stamp,
        scope="by_school",
        title="Students per school",
        n_input=total,
        summary=f"{total:,} students in {len(sizes):,} schools.",
        tables=[_table("schools", "Students per school", sizes, labels)],
    )


def distribution_documents(
    students: DataFrame, *, run_id: str, computed_at: dt.datetime, schools: DataFrame | None = None
) -> list[ResultDocument]:
    """Every document of this module from cleaned students with `sector` joined (Spark). Cache
    `students` first: each table is one pass over it."""
    return _documents(
        histogram_counts(students),
        relation_tables(students),
        school_sizes(students, schools),
        RunStamp(run_id, computed_at),
    )


def distribution_documents_pandas(
    students: pd.DataFrame, *, run_id: str, computed_at: dt.datetime, schools: pd.DataFrame | None = None
) -> list[ResultDocument]:
    """`distribution_documents` for a pandas frame (small data, tests, dashboards' fixtures)."""
    return _documents(
        histogram_counts_pandas(students),
        relation_tables_pandas(students),
        school_sizes_pandas(students, schools),
        RunStamp(run_id, computed_at),
    )


def _documents(
    counts: pd.DataFrame, relation: tuple[pd.DataFrame, pd.DataFrame], sizes: pd.DataFrame, stamp: RunStamp
) -> list[ResultDocument]:
    binned, lines = relation
    return [
        *histogram_documents(counts, stamp),
        relation_document(binned, lines, stamp),
        schools_document(sizes, stamp),
    ]
